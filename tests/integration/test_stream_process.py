"""The live stream in a service process: SIGTERM with a stream open, a reader that reads nothing."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import trio
from httpx_sse import EventSource

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS
from tests.support.processes import ServiceProcess
from tests.support.results import insert_results


@pytest.fixture
def web(settings: Settings) -> Iterator[ServiceProcess]:
    process = ServiceProcess(settings, "web")
    try:
        yield process
    finally:
        process.close()


async def test_sigterm_ends_open_streams_and_exits_0(web: ServiceProcess) -> None:
    base_url = (await web.wait_ready())["addresses"][0]
    with trio.fail_after(IO_GUARD_SECONDS):
        async with (
            httpx.AsyncClient(base_url=base_url) as client,
            client.stream("GET", "/results/stream") as response,
        ):
            events = EventSource(response).aiter_sse()
            assert (await anext(events)).event == "ready"
            web.send(signal.SIGTERM)
            assert [event async for event in events] == []
    assert await web.wait_exit() == 0


async def test_a_reader_reading_nothing_while_5000_results_change_keeps_rss_flat(
    web: ServiceProcess, database_url: str
) -> None:
    base_url = (await web.wait_ready())["addresses"][0]
    urls = [f"https://cdn.example.com/j/{n}.png" for n in range(5000)]
    await trio.to_thread.run_sync(lambda: insert_results(database_url, urls))

    def change_all(rounds: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as connection:
            for round in range(1, rounds + 1):
                for start in range(1, 5001, 250):
                    connection.execute(
                        "UPDATE results SET attempts = %s WHERE id BETWEEN %s AND %s",
                        (round, start, start + 249),
                    )

    with trio.fail_after(IO_GUARD_SECONDS):
        async with (
            httpx.AsyncClient(base_url=base_url) as client,
            client.stream("GET", "/results/stream") as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():  # subscribed: its position is taken
                if line == "event: ready":
                    break
            await trio.to_thread.run_sync(change_all, 1)
            before = web.rss_kib("VmRSS")
            await trio.to_thread.run_sync(change_all, 4)
            after = web.rss_kib("VmRSS")
    print(f"RSS before {before} KiB, after {after} KiB")
    assert after - before < 5 * 1024  # unbounded, it grew by 10 MiB here
