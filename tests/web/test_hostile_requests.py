"""Requests no client should send: each gets a 4xx problem, never a 500 or a hung connection."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import psycopg
import pytest
import trio

from tests.conftest import IO_GUARD_SECONDS, RunningService
from tests.support.rawhttp import slow_request_then_health

JSON = {"Content-Type": "application/json"}
PAST_BIGINT = str(2**63)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "path", ["/results/1", "/results/list?jobId=j", "/health", "/openapi.json"]
)
async def test_a_body_on_get_or_head_is_400(
    service: RunningService, method: str, path: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.request(method, path, content=b"jobId=other")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    if method == "GET":
        assert "must not have a body" in response.json()["detail"]


@pytest.mark.parametrize(("path", "status"), [("/results/enqueue", 405), ("/nowhere", 404)])
async def test_a_get_with_a_body_where_no_get_is_served_is_still_404_or_405(
    service: RunningService, path: str, status: int
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.request("GET", path, content=b"{}", headers=JSON)
    assert response.status_code == status


async def test_an_empty_body_on_get_is_fine(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.request("GET", "/health", content=b"")
    assert response.status_code == 200


@pytest.fixture
async def results_locked(service: RunningService, database_url: str) -> AsyncIterator[None]:
    """The results table of the running service locked: a request that queries it waits."""
    connect = functools.partial(psycopg.connect, database_url)
    connection: psycopg.Connection[tuple[object, ...]] = await trio.to_thread.run_sync(connect)
    try:
        lock = "LOCK TABLE results IN ACCESS EXCLUSIVE MODE"
        await trio.to_thread.run_sync(connection.execute, lock)
        yield
    finally:
        await trio.to_thread.run_sync(connection.close)


@pytest.mark.parametrize(
    "raw_id", [PAST_BIGINT, "99999999999999999999999999999", "9" * 5000, "0", "-1"]
)
async def test_an_id_no_result_can_have_is_404_before_any_query(
    service: RunningService, results_locked: None, raw_id: str
) -> None:
    """Past 2^63-1 psycopg sends the id as numeric and PostgreSQL scans the table; with the
    table locked, any query would wait, so a prompt 404 shows that none was made."""
    with trio.fail_after(IO_GUARD_SECONDS):
        found = await service.client.get(f"/results/{raw_id}")
        canceled = await service.client.post(f"/results/{raw_id}/cancel")
    for response in (found, canceled):
        assert response.status_code == 404, response.text
        assert response.headers["Content-Type"] == "application/problem+json"


async def test_the_largest_id_is_still_looked_up(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.get(f"/results/{2**63 - 1}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"no result with id {2**63 - 1}"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 60_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000],
    ids=["arrays", "objects"],
)
async def test_deeply_nested_json_is_400(service: RunningService, raw: bytes) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post("/results/enqueue", content=raw, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["pointer"] == "#"


async def test_an_oversized_slow_body_is_413_and_the_connection_stays_usable(
    service: RunningService,
) -> None:
    """Refused before its body had arrived, the connection used to hang."""
    body = b"x" * (100 * 1024)
    head = b"POST /results/enqueue HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    with trio.fail_after(IO_GUARD_SECONDS):
        status, answer, health = await slow_request_then_health(service.base_url, head, body)
        assert (status, health) == (413, 200), answer
