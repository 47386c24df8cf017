"""Live streams: STREAMS open streams on one web process while results change one commit at a
time; event latency from the commit's return to each client's parse of the event, and the
process's RSS without streams and with them.

The client (this process, one Trio loop parsing every stream's events) shares the machine's
cores with the service and PostgreSQL, so the latency includes its own queueing.

python -m bench.stream [STREAMS] [CHANGES]
"""

from __future__ import annotations

import json
import sys
import time

import httpx
import psycopg
import trio
from httpx_sse import EventSource

from bench.common import Servers, describe, servers, table
from tests.support.processes import ServiceProcess
from tests.support.results import insert_results

SPACING_SECONDS = 0.2  # between commits: each change is its own batch


async def measure(env: Servers, streams: int, changes: int) -> None:
    settings = env.fresh_settings()
    database_url = settings.database_url
    assert database_url
    await trio.to_thread.run_sync(
        lambda: insert_results(database_url, ["https://cdn.example.com/j/bench.png"])
    )
    process = ServiceProcess(settings, "web", BGC_STREAM_MAX=str(streams + 10))
    try:
        base_url = (await process.wait_ready())["addresses"][0]
        rss_idle = process.rss_kib("VmRSS")
        committed: dict[int, float] = {}
        received: list[float] = []
        ready = 0
        all_ready = trio.Event()
        limits = httpx.Limits(max_connections=streams + 10)
        async with (
            httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client,
            trio.open_nursery() as nursery,
        ):

            async def follow() -> None:
                nonlocal ready
                async with client.stream("GET", "/results/stream") as response:
                    assert response.status_code == 200, response.status_code
                    async for event in EventSource(response).aiter_sse():
                        if event.event == "ready":
                            ready += 1
                            if ready == streams:
                                all_ready.set()
                            continue
                        at = time.perf_counter()
                        attempts = json.loads(event.data)["attempts"]
                        received.append(at - committed[attempts])
                        if attempts == changes:
                            return

            for _ in range(streams):
                nursery.start_soon(follow)
            with trio.fail_after(120):
                await all_ready.wait()
            rss_open = process.rss_kib("VmRSS")

            def change(value: int) -> None:
                with psycopg.connect(database_url, autocommit=True) as connection:
                    connection.execute("UPDATE results SET attempts = %s", (value,))
                    committed[value] = time.perf_counter()

            for value in range(1, changes + 1):
                await trio.to_thread.run_sync(change, value)
                await trio.sleep(SPACING_SECONDS)
        rss_after = process.rss_kib("VmRSS")
        peak = process.rss_kib("VmHWM")
    finally:
        process.close()
    print(
        table(
            f"live streams: {streams} open on one web process, {changes} commits",
            [
                (
                    "events received (the rest folded into later ones)",
                    f"{len(received)} of {streams * changes}",
                ),
                ("commit -> event parsed, ms", describe([s * 1000 for s in received])),
                ("RSS, no stream open, MiB", f"{rss_idle / 1024:.1f}"),
                (f"RSS, {streams} streams open, MiB", f"{rss_open / 1024:.1f}"),
                (
                    "RSS after the changes / peak, MiB",
                    f"{rss_after / 1024:.1f} / {peak / 1024:.1f}",
                ),
            ],
        )
    )


if __name__ == "__main__":
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    changes = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with servers() as env:
        trio.run(measure, env, streams, changes)
