"""GET /results/stream: Server-Sent Events from committed changes, resumable by Last-Event-ID."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
import trio
from httpx_sse import EventSource, ServerSentEvent

from bgchallenge.db.database import open_database
from bgchallenge.db.migrate import migrate
from bgchallenge.db.repository import Results
from bgchallenge.service import Role, run_service
from bgchallenge.settings import Settings
from bgchallenge.web import stream as stream_module
from bgchallenge.web.stream import CHANGES_CHANNEL, STREAM_BUFFER, StreamHub
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.results import eventually, insert_results
from tests.support.signing import signed_headers


async def execute(database_url: str, statement: str) -> None:
    """One statement in a transaction of its own, committed when this returns."""

    def run() -> None:
        with psycopg.connect(database_url) as connection:
            connection.execute(statement)

    await trio.to_thread.run_sync(run)


RUNNING = "status = 'running', lease_expires_at = now() + interval '1 minute'"
SUCCEEDED = (
    "status = 'succeeded', ended_at = now(), source_url = NULL, lease_expires_at = NULL, "
    "storage_bucket = 'b', storage_key = 'k', storage_size = 1, "
    "storage_content_type = 'image/png', storage_sha256 = 'x'"
)


async def add(database_url: str, names: list[str], job: str = "job") -> None:
    """Queued results, all in one transaction."""
    urls = [f"https://cdn.example.com/{job}/{name}.png" for name in names]
    await trio.to_thread.run_sync(lambda: insert_results(database_url, urls, job=job))


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events = EventSource(response).aiter_sse()

    async def next(self) -> ServerSentEvent:
        with trio.fail_after(IO_GUARD_SECONDS):
            return await anext(self.events)

    async def results(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for _ in range(count):
            event = await self.next()
            assert event.event == "result"
            found.append((event.id, json.loads(event.data)))
        return found


@asynccontextmanager
async def open_stream(
    service: RunningService, path: str = "/results/stream", headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    async with service.client.stream("GET", path, headers=headers or {}) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


def changes_listeners(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (f"bgchallenge: listen {CHANGES_CHANNEL}",),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_changes_are_listened_to_only_while_a_stream_is_open(
    service: RunningService, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process nobody follows is not woken by every change; the listener starts with the
    first stream, before its ready event, and stops a linger after the last one."""
    monkeypatch.setattr(stream_module, "LISTEN_LINGER_SECONDS", 0.2)
    assert changes_listeners(database_url) == 0
    for name in ("a", "b"):  # the second stream starts the listener again
        async with open_stream(service) as stream:
            assert (await stream.next()).event == "ready"
            assert changes_listeners(database_url) == 1
            await add(database_url, [name])
            [(_, result)] = await stream.results(1)
            assert result["status"] == "queued"
        with trio.fail_after(IO_GUARD_SECONDS):
            await eventually(lambda: changes_listeners(database_url) == 0)


async def test_ready_first_then_each_change_in_order_with_its_own_id(
    service: RunningService, database_url: str
) -> None:
    async with open_stream(service) as stream:
        ready = await stream.next()
        assert ready.event == "ready" and ready.data == "{}" and ready.id
        await add(database_url, ["a"])
        [(queued_id, queued)] = await stream.results(1)
        await execute(
            database_url, f"UPDATE results SET {RUNNING}, started_at = now(), attempts = 1"
        )
        [(running_id, running)] = await stream.results(1)
        await execute(database_url, f"UPDATE results SET {SUCCEEDED}")
        [(done_id, done)] = await stream.results(1)
    assert [queued["status"], running["status"], done["status"]] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert queued["id"] == running["id"] == done["id"]
    assert len({ready.id, queued_id, running_id, done_id}) == 4
    got = await service.client.get(f"/results/{done['id']}")
    assert got.json() == done  # the event's data is the result as GET renders it


async def test_a_job_filter_sends_only_that_jobs_results(
    service: RunningService, database_url: str
) -> None:
    async with open_stream(service, "/results/stream?jobId=mine") as stream:
        assert (await stream.next()).event == "ready"
        await add(database_url, ["x"], job="other")
        await add(database_url, ["y"], job="mine")
        [(_, result)] = await stream.results(1)
    assert result["jobId"] == "mine"


async def test_resuming_sends_every_change_missed_once_then_goes_live(
    service: RunningService, database_url: str
) -> None:
    async with open_stream(service) as stream:
        await stream.next()
        await add(database_url, ["a"])
        [(last_id, first)] = await stream.results(1)
    # While disconnected: a new result, and the one seen changes twice (folded into its latest).
    await add(database_url, ["b"])
    await execute(database_url, f"UPDATE results SET {RUNNING} WHERE id = {first['id']}")
    await execute(database_url, f"UPDATE results SET attempts = 7 WHERE id = {first['id']}")
    async with open_stream(service, headers={"Last-Event-ID": last_id}) as stream:
        ready = await stream.next()
        assert ready.event == "ready"
        missed = await stream.results(2)
        await add(database_url, ["c"])
        [(_, live)] = await stream.results(1)
    states = sorted((r["id"], r["status"], r["attempts"]) for _, r in missed)
    assert states == [(first["id"], "running", 7), (first["id"] + 1, "queued", 0)]
    assert live["url"].endswith("/c.png")  # nothing was sent twice before it


async def test_resuming_from_the_middle_of_a_batch_sends_only_the_rest(
    service: RunningService, database_url: str
) -> None:
    async with open_stream(service) as stream:
        await stream.next()
        await add(database_url, ["a", "b", "c"])  # one commit: one batch
        events = await stream.results(3)
    (first_id, _), rest = events[0], [r for _, r in events[1:]]
    async with open_stream(service, headers={"Last-Event-ID": first_id}) as stream:
        await stream.next()
        replayed = [r for _, r in await stream.results(2)]
        await add(database_url, ["d"])
        [(_, live)] = await stream.results(1)
    assert replayed == rest
    assert live["url"].endswith("/d.png")


async def test_an_unreadable_position_is_a_400(service: RunningService, database_url: str) -> None:
    async with open_stream(service, "/results/stream?jobId=one") as stream:
        ready = await stream.next()
    for path, last_id in [
        ("/results/stream", "not-a-position"),
        ("/results/stream", ready.id),  # issued for another filter
        ("/results/stream?jobId=one", ready.id + "x"),
    ]:
        response = await service.client.get(path, headers={"Last-Event-ID": last_id})
        assert response.status_code == 400, (path, last_id)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await service.client.get("/results/stream?status=queued")).status_code == 400


async def test_keep_alive_comments_even_while_other_jobs_change(
    nursery: trio.Nursery, settings: Settings, database_url: str
) -> None:
    """Batches of which this stream sends nothing do not count as keeping it alive."""
    service = await start_service(
        nursery, dataclasses.replace(settings, stream_keep_alive_seconds=0.3), Role.WEB
    )

    async def busy() -> None:
        for n in range(10_000):
            await add(database_url, [str(n)], job="busy")
            await trio.sleep(0.05)

    with trio.fail_after(IO_GUARD_SECONDS):
        async with service.client.stream("GET", "/results/stream?jobId=quiet") as response:
            lines = response.aiter_lines()
            assert (await anext(lines)).startswith("id: ")
            async with trio.open_nursery() as changes:
                changes.start_soon(busy)
                await trio.sleep(0.1)
                with trio.fail_after(3):
                    while (await anext(lines)) != ": keep-alive":
                        pass
                changes.cancel_scope.cancel()
    service.shutdown.set()


async def test_past_the_limit_is_a_503_with_retry_after(
    nursery: trio.Nursery, settings: Settings
) -> None:
    service = await start_service(nursery, dataclasses.replace(settings, stream_max=1), Role.WEB)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_stream(service) as stream:
            await stream.next()
            refused = await service.client.get("/results/stream")
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        # The closed stream no longer counts (its end is seen once the server notices).
        while True:
            async with service.client.stream("GET", "/results/stream") as response:
                if response.status_code == 200:
                    break
            await trio.sleep(0.05)
    service.shutdown.set()


async def test_shutdown_ends_open_streams_and_the_service_stops(settings: Settings) -> None:
    shutdown = trio.Event()
    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(run_service, settings, Role.WEB, shutdown)
            async with (
                httpx.AsyncClient(base_url=binds[0]) as client,
                client.stream("GET", "/results/stream") as response,
            ):
                events = EventSource(response).aiter_sse()
                assert (await anext(events)).event == "ready"
                shutdown.set()
                assert [event async for event in events] == []  # ends cleanly
        # the nursery exits: run_service returned, nothing outlived it


async def test_an_unsigned_stream_is_401_when_signing_is_on(
    nursery: trio.Nursery, settings: Settings
) -> None:
    service = await start_service(
        nursery, dataclasses.replace(settings, signing_secret="s3cret"), Role.WEB
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        unsigned = await service.client.get("/results/stream")
        headers = signed_headers("s3cret", "GET", "/results/stream", b"")
        async with open_stream(service, headers=headers) as stream:
            assert (await stream.next()).event == "ready"
    assert unsigned.status_code == 401
    service.shutdown.set()


async def test_a_reader_that_falls_behind_is_closed_and_holds_a_bounded_buffer(
    database_url: str,
) -> None:
    """5,000 results change while the stream's reader reads nothing: the stream's channel holds
    at most STREAM_BUFFER batches, then the stream is closed (its client would resume)."""
    await add(database_url, [str(n) for n in range(5000)])
    shutdown = trio.Event()
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(database_url, max_size=2) as database:
            await migrate(database)
            results = Results(database)
            hub = StreamHub(
                results, await results.cursor_key(), max_streams=10, keep_alive_seconds=60
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(hub.serve, database, shutdown)
                body = hub.events(None, None)
                assert b"event: ready" in await anext(body)
                round = 0
                while not hub.closed_slow:  # commits may fold into fewer batches: go on
                    round += 1
                    start = (round * 100) % 5000 + 1
                    await execute(
                        database_url,
                        f"UPDATE results SET attempts = {round} "
                        f"WHERE id BETWEEN {start} AND {start + 99}",
                    )
                chunks = [chunk async for chunk in body]  # what was buffered, then the end
                shutdown.set()
    assert 0 < len(chunks) <= STREAM_BUFFER * 100
    assert hub.open_streams == 0


async def test_a_change_committed_while_the_listener_reconnects_is_not_lost(
    service: RunningService, database_url: str
) -> None:
    async with open_stream(service) as stream:
        await stream.next()
        await add(database_url, ["before"])
        await stream.results(1)
        # The listener's connection drops; the next commit's NOTIFY goes to nobody.
        await execute(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query = 'LISTEN bgc_changes'",
        )
        await add(database_url, ["meanwhile"])
        [(_, result)] = await stream.results(1)
    assert result["url"].endswith("/meanwhile.png")


async def test_a_change_no_client_sees_sends_no_event(
    service: RunningService, database_url: str
) -> None:
    async with open_stream(service) as stream:
        await stream.next()
        await add(database_url, ["a"])
        [(_, queued)] = await stream.results(1)
        await execute(database_url, "UPDATE results SET due_at = now() + interval '1 hour'")
        await execute(database_url, f"UPDATE results SET {RUNNING}")
        [(_, running)] = await stream.results(1)  # the next event is the visible change
    assert (queued["status"], running["status"]) == ("queued", "running")
