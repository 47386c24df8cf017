"""The sign-here filter with BGC_SIGNING_SECRET set."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import trio

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.rawhttp import slow_request_then_health
from tests.support.signing import signed_headers

SECRET = "test-secret"
BODY = json.dumps({"jobId": "j", "url": "https://e.com/a.png?sig=1"}).encode()
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def signed_service(nursery: trio.Nursery, settings: Settings) -> RunningService:
    with trio.fail_after(IO_GUARD_SECONDS):
        return await start_service(nursery, dataclasses.replace(settings, signing_secret=SECRET))


async def enqueue(service: RunningService, headers: dict[str, str], body: bytes = BODY) -> int:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post(
            "/results/enqueue", content=body, headers={**JSON, **headers}
        )
    if response.status_code == 401:
        assert response.headers["Content-Type"] == "application/problem+json"
    return response.status_code


async def test_good_signature_is_accepted(signed_service: RunningService) -> None:
    headers = signed_headers(SECRET, "POST", "/results/enqueue", BODY)
    assert await enqueue(signed_service, headers) == 202


async def test_missing_signature_is_401_whatever_the_body(signed_service: RunningService) -> None:
    assert await enqueue(signed_service, {}) == 401
    assert await enqueue(signed_service, {}, body=b"[not json") == 401
    stamp_only = {"X-Bgc-Timestamp": str(int(time.time()))}
    assert await enqueue(signed_service, stamp_only) == 401


async def test_wrong_signature_is_401(signed_service: RunningService) -> None:
    wrong_secret = signed_headers("other", "POST", "/results/enqueue", BODY)
    assert await enqueue(signed_service, wrong_secret) == 401
    other_body = signed_headers(SECRET, "POST", "/results/enqueue", BODY + b" ")
    assert await enqueue(signed_service, other_body) == 401
    other_path = signed_headers(SECRET, "POST", "/results/enqueue?x=1", BODY)
    assert await enqueue(signed_service, other_path) == 401


async def test_stale_signature_is_401(signed_service: RunningService) -> None:
    stale = signed_headers(
        SECRET, "POST", "/results/enqueue", BODY, timestamp=int(time.time()) - 301
    )
    assert await enqueue(signed_service, stale) == 401


async def test_reads_are_signed_too_but_health_is_not(signed_service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        unsigned = await signed_service.client.get("/results/1")
        signed = await signed_service.client.get(
            "/results/1", headers=signed_headers(SECRET, "GET", "/results/1", b"")
        )
        health = await signed_service.client.get("/health")
    assert unsigned.status_code == 401
    assert signed.status_code == 404
    assert health.status_code == 200


async def test_the_query_string_is_part_of_the_signed_target(
    signed_service: RunningService,
) -> None:
    headers = signed_headers(SECRET, "GET", "/results/1?x=1", b"")
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await signed_service.client.get("/results/1?x=1", headers=headers)
    assert response.status_code == 404


async def test_a_signed_list_cannot_be_replayed_as_another_jobs_list(
    signed_service: RunningService,
) -> None:
    """The old `.`-joined canonical string signed these two requests alike."""
    signed = signed_headers(SECRET, "GET", "/results/list?jobId=batch.2024&status=failed", b"")
    with trio.fail_after(IO_GUARD_SECONDS):
        own = await signed_service.client.get(
            "/results/list", params={"jobId": "batch.2024", "status": "failed"}, headers=signed
        )
        replayed = await signed_service.client.request(
            "GET",
            "/results/list?jobId=batch",
            content=b"2024&status=failed.",
            headers=signed,
        )
    assert own.status_code == 200
    assert replayed.status_code == 401


async def test_a_signed_get_with_a_body_is_400(signed_service: RunningService) -> None:
    headers = signed_headers(SECRET, "GET", "/results/list?jobId=j", b"x")
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await signed_service.client.request(
            "GET", "/results/list?jobId=j", content=b"x", headers=headers
        )
    assert response.status_code == 400
    assert "must not have a body" in response.json()["detail"]


async def test_an_unsigned_oversized_body_is_401_and_the_connection_stays_usable(
    signed_service: RunningService,
) -> None:
    """The signature is checked before the body's size: 401, not 413. The body is still
    read to its end (a slow client's too), so the kept-alive connection serves the next."""
    body = b"x" * (100 * 1024)
    head = b"POST /results/enqueue HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    with trio.fail_after(IO_GUARD_SECONDS):
        status, answer, health = await slow_request_then_health(signed_service.base_url, head, body)
        assert (status, health) == (401, 200), answer
        # and with a client library, on one connection pool
        assert await enqueue(signed_service, {}, body=body) == 401
        assert await enqueue(signed_service, {}) == 401


async def test_an_oversized_body_is_413_only_when_rightly_signed(
    signed_service: RunningService,
) -> None:
    body = json.dumps({"jobId": "j", "url": "https://e.com/a.png", "pad": "x" * 70_000}).encode()
    wrong = signed_headers("other", "POST", "/results/enqueue", body)
    right = signed_headers(SECRET, "POST", "/results/enqueue", body)
    assert await enqueue(signed_service, wrong, body=body) == 401
    assert await enqueue(signed_service, right, body=body) == 413


def documented_signing_example() -> str:
    """The curl/openssl example of docs/http.md, exactly as written there."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "http.md").read_text(encoding="utf-8")
    section = doc[doc.index("\n## Signing\n") :]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start : section.index("```", start)]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="no curl")
async def test_the_documented_signing_example_is_accepted(signed_service: RunningService) -> None:
    script = documented_signing_example()
    assert "localhost:8000" in script
    script = script.replace("localhost:8000", signed_service.base_url)
    run = functools.partial(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", script],
        env={**os.environ, "BGC_SIGNING_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=IO_GUARD_SECONDS,
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        completed = await trio.to_thread.run_sync(run)
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["status"] == "queued", answer
    assert answer["jobId"] == "job-1"
