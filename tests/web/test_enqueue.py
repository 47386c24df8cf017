"""POST /results/enqueue and GET /results/{id} against the running service."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
import trio

from bgchallenge.service import Role
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service

JSON = {"Content-Type": "application/json"}


async def post(service: RunningService, body: object, **headers: str) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await service.client.post(
        "/results/enqueue", content=raw, headers={**JSON, **headers}
    )
    return response.status_code, response.json()


def row_count(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        count = connection.execute("SELECT count(*) FROM results").fetchone()
        assert count is not None
        return int(count[0])


async def test_can_accept(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post(
            "/results/enqueue",
            json={"jobId": "job-1", "url": "https://cdn.example.com/a/cat.png?X-Amz-Signature=s"},
        )
        assert response.status_code == 202
        result = response.json()
        assert response.headers["Location"] == f"/results/{result['id']}"
        assert result["status"] == "queued" and result["attempts"] == 0
        assert result["jobId"] == "job-1"
        assert result["url"] == "https://cdn.example.com/a/cat.png"
        assert result["objectPath"] == "/a/cat.png"
        assert "X-Amz" not in response.text
        assert result["startedAt"] is None and result["durationMs"] is None
        assert result["createdAt"].endswith("Z") and len(result["createdAt"]) == 24

        fetched = await service.client.get(f"/results/{result['id']}")
        assert fetched.status_code == 200 and fetched.json() == result
        assert row_count(database_url) == 1


@pytest.mark.parametrize(
    "body", [[{"jobId": "j", "url": "https://e.com/a.png"}], [], "a string", 42, True, None]
)
async def test_rejects_arrays_and_every_non_object(
    service: RunningService, database_url: str, body: object
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        status, problem = await post(service, body)
    assert status == 400
    assert "single JSON object is required" in problem["detail"]
    assert problem["type"].endswith("single-object-required")
    assert row_count(database_url) == 0


async def test_is_idempotent(service: RunningService, database_url: str) -> None:
    body = {"jobId": "job-1", "url": "https://cdn.example.com/a.png"}
    with trio.fail_after(IO_GUARD_SECONDS):
        first_status, first = await post(service, body)
        second_status, second = await post(service, body)
    assert (first_status, second_status) == (202, 409)
    assert second["existingId"] == first["id"]
    assert second["type"].endswith("duplicate")
    assert row_count(database_url) == 1


async def test_same_object_with_another_presigned_query_is_a_duplicate(
    service: RunningService, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        status, first = await post(
            service, {"jobId": "j", "url": "https://b.s3.example.com/k/a.png?X-Amz-Signature=1"}
        )
        assert status == 202
        status, second = await post(
            service,
            {"jobId": "j", "url": "https://B.S3.example.com:443/k/./a.png?X-Amz-Signature=2#f"},
        )
        assert status == 409 and second["existingId"] == first["id"]
        # another job may ask for the same object
        status, _ = await post(service, {"jobId": "k", "url": "https://b.s3.example.com/k/a.png"})
        assert status == 202
    assert row_count(database_url) == 2


async def test_concurrent_duplicates_make_one_row(
    service: RunningService, database_url: str
) -> None:
    statuses: list[int] = []

    async def one(n: int) -> None:
        status, _ = await post(service, {"jobId": "j", "url": f"https://e.com/a.png?n={n}"})
        statuses.append(status)

    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(one, n)
    assert sorted(statuses) == [202] + [409] * 19
    assert row_count(database_url) == 1


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        (b'{"jobId": "j", "url": ', "#"),
        (b'{"url": "https://e.com/a"}', "#/jobId"),
        (b'{"jobId": "", "url": "https://e.com/a"}', "#/jobId"),
        (json.dumps({"jobId": "j" * 201, "url": "https://e.com/a"}).encode(), "#/jobId"),
        (b'{"jobId": "j"}', "#/url"),
        (b'{"jobId": "j", "url": ""}', "#/url"),
        (b'{"jobId": "j", "url": "ftp://e.com/a"}', "#/url"),
        (b'{"jobId": "j", "url": "/relative/a.png"}', "#/url"),
        (json.dumps({"jobId": "j", "url": "https://e.com/" + "a" * 2040}).encode(), "#/url"),
        (b'{"jobId": "j", "url": "https://e.com/a", "priority": 1}', "#/priority"),
    ],
)
async def test_field_problems_are_400_with_errors(
    service: RunningService, database_url: str, raw: bytes, pointer: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        status, problem = await post(service, raw)
    assert status == 400
    assert pointer in [error["pointer"] for error in problem["errors"]]
    assert row_count(database_url) == 0


async def test_body_over_64_kib_is_413(service: RunningService, database_url: str) -> None:
    raw = json.dumps({"jobId": "j", "url": "https://e.com/a", "pad": "x" * 65536}).encode()
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post("/results/enqueue", content=raw, headers=JSON)
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert row_count(database_url) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_content_type_not_json_is_415(
    service: RunningService, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post(
            "/results/enqueue",
            content=b'{"jobId": "j", "url": "https://e.com/a"}',
            headers=headers,
        )
    assert response.status_code == 415
    assert response.json()["status"] == 415


async def test_json_with_charset_is_accepted(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post(
            "/results/enqueue",
            content=b'{"jobId": "j", "url": "https://e.com/a"}',
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 202


async def test_unknown_result_and_route_are_problems(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        unknown = await service.client.get("/results/999999")
        route = await service.client.get("/nothing-here")
        method = await service.client.get("/results/enqueue")
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("not-found")
    assert route.status_code == 404
    assert method.status_code == 405 and "POST" in method.headers["Allow"]
    for response in (unknown, route, method):
        assert response.headers["Content-Type"] == "application/problem+json"
        assert {"type", "title", "status", "detail"} <= set(response.json())


async def test_two_web_processes_racing_on_one_identity_make_one_row(
    nursery: trio.Nursery, settings: Settings, database_url: str
) -> None:
    """Two writers, two transactions: the loser of the race sees the winner's row only after
    the winner commits, past its own snapshot, and must ask again rather than answer wrongly."""
    with trio.fail_after(IO_GUARD_SECONDS):
        services = [await start_service(nursery, settings, Role.WEB) for _ in range(2)]
        statuses: list[tuple[int, int | None]] = []

        async def one(service: RunningService, n: int) -> None:
            status, body = await post(service, {"jobId": "race", "url": f"https://e.com/{n % 10}"})
            statuses.append((status, body.get("existingId") or body.get("id")))

        async with trio.open_nursery() as clients:
            for n in range(200):
                clients.start_soon(one, services[n % 2], n)
        for service in services:
            service.shutdown.set()
    assert sorted(s for s, _ in statuses) == [202] * 10 + [409] * 190
    assert row_count(database_url) == 10
    assert len({result_id for _, result_id in statuses}) == 10


async def test_a_presigned_url_already_expired_is_refused(
    service: RunningService, database_url: str
) -> None:
    url = (
        "https://b.s3.amazonaws.com/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Date=20200101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=abc"
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        status, problem = await post(service, {"jobId": "j", "url": url})
    assert status == 400
    assert problem["type"].endswith("invalid-body")
    assert problem["errors"] == [
        {"pointer": "#/url", "detail": "the presigned URL expired at 2020-01-01T01:00:00.000Z"}
    ]
    assert row_count(database_url) == 0


async def test_the_url_expiry_is_shown_and_stored(service: RunningService) -> None:
    url = (
        "https://account.blob.core.windows.net/c/a.png?sv=2022-11-02&sp=r"
        "&se=2099-12-01T10%3A00%3A00.5Z&sig=abc"
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        status, result = await post(service, {"jobId": "j", "url": url})
        assert status == 202
        assert result["urlExpiresAt"] == "2099-12-01T10:00:00.500Z"
        fetched = await service.client.get(f"/results/{result['id']}")
        assert fetched.json()["urlExpiresAt"] == "2099-12-01T10:00:00.500Z"
        listed = await service.client.get("/results/list", params={"jobId": "j"})
        assert listed.json()["items"][0]["urlExpiresAt"] == "2099-12-01T10:00:00.500Z"
        plain = await service.client.post(
            "/results/enqueue", json={"jobId": "j", "url": "https://e.com/b.png"}
        )
        assert plain.json()["urlExpiresAt"] is None
