"""A result's download progress, as a client polling the API sees it, against real PostgreSQL,
S3 and a slow origin on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import trio

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.origin import CHUNK, Origin

# A download of five chunks, one every 0.4 s: about 2 s, over which progress is written
# every 0.2 s.
SIZE = 5 * CHUNK
PAUSE = 0.4
PROGRESS_SECONDS = 0.2


async def enqueue(service: RunningService, url: str) -> int:
    response = await service.client.post("/results/enqueue", json={"jobId": "job", "url": url})
    assert response.status_code == 202, response.text
    assert response.json()["progress"] is None
    return int(response.json()["id"])


async def read(service: RunningService, result_id: int) -> dict[str, Any]:
    response = await service.client.get(f"/results/{result_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def read_until(
    service: RunningService, result_id: int, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the result (the state of another task's download: nothing to wait on)."""
    while True:
        result = await read(service, result_id)
        if condition(result):
            return result
        await trio.sleep(0.02)


async def watch(service: RunningService, result_id: int) -> tuple[list[dict[str, Any]], Any]:
    """Poll the result until it is terminal: the progress seen while it ran, and the last."""
    seen: list[dict[str, Any]] = []
    while True:
        result = await read(service, result_id)
        if result["status"] not in ("queued", "running"):
            return seen, result
        if result["status"] == "running" and result["progress"] not in (None, *seen[-1:]):
            seen.append(result["progress"])
        await trio.sleep(0.05)


def with_progress(settings: Settings) -> Settings:
    return dataclasses.replace(settings, progress_seconds=PROGRESS_SECONDS)


async def test_progress_grows_while_running_and_ends_complete(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, with_progress(settings))
        result_id = await enqueue(service, origin.url("slow.png", size=SIZE, slow=PAUSE))
        seen, final = await watch(service, result_id)
        service.shutdown.set()
    assert final["status"] == "succeeded", final
    received = [p["receivedBytes"] for p in seen]
    assert len(received) >= 2 and received == sorted(received) and received[0] > 0
    assert received[-1] <= SIZE and {p["totalBytes"] for p in seen} == {SIZE}
    assert final["progress"] == {"receivedBytes": SIZE, "totalBytes": SIZE}


async def test_total_is_null_for_a_chunked_body(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, with_progress(settings))
        url = origin.url("chunked.png", size=SIZE, slow=PAUSE, chunked=1)
        result_id = await enqueue(service, url)
        seen, final = await watch(service, result_id)
        service.shutdown.set()
    assert final["status"] == "succeeded", final
    assert seen and {p["totalBytes"] for p in seen} == {None}
    assert final["progress"] == {"receivedBytes": SIZE, "totalBytes": None}


async def test_list_etag_changes_when_progress_moves(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, with_progress(settings))
        result_id = await enqueue(service, origin.url("slow.png", size=SIZE, slow=PAUSE))
        while True:
            listed = await service.client.get("/results/list")
            (item,) = listed.json()["items"]
            if item["status"] == "running" and item["progress"] is not None:
                break
            await trio.sleep(0.02)
        await read_until(service, result_id, lambda r: r["progress"] != item["progress"])
        again = await service.client.get(
            "/results/list", headers={"If-None-Match": listed.headers["ETag"]}
        )
        service.shutdown.set()
    assert again.status_code == 200
    assert again.headers["ETag"] != listed.headers["ETag"]
    (moved,) = again.json()["items"]
    assert moved["progress"]["receivedBytes"] > item["progress"]["receivedBytes"]


async def test_a_retry_starts_over_and_a_failure_keeps_what_it_received(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    # The first attempt runs out of time after the first chunk; the second gets a fast origin.
    size = 3 * CHUNK
    settings = dataclasses.replace(
        with_progress(settings), attempt_seconds=0.8, retry_delays=(1.0,)
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, settings)
        result_id = await enqueue(service, origin.url("retry.png", size=size, slow=0.5))
        queued = await read_until(service, result_id, lambda r: r["error"] is not None)
        origin.override("retry.png", slow=0)
        _, final = await watch(service, result_id)
        service.shutdown.set()
    assert queued["status"] == "queued" and queued["error"]["code"] == "origin_unavailable"
    assert 0 < queued["progress"]["receivedBytes"] < size
    assert queued["progress"]["totalBytes"] == size
    assert final["status"] == "succeeded" and final["attempts"] == 2
    assert final["progress"] == {"receivedBytes": size, "totalBytes": size}
