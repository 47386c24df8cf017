"""What one database round trip costs at idle: psycopg's async API on trio-asyncio (what the
service uses) beside its sync API, and a single-row INSERT with its commit.

    python -m bench.roundtrip [CALLS]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

import psycopg
import trio

from bench.common import percentile, servers, table
from bgchallenge.db.database import open_database

PAUSE_SECONDS = 0.002  # between calls: each one starts from idle, as a pickup does


def summary(micros: list[float]) -> str:
    return f"p50 {percentile(micros, 0.5):.0f} µs, p99 {percentile(micros, 0.99):.0f} µs"


async def timed_async(calls: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    micros = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        micros.append((time.perf_counter() - started) * 1e6)
        await trio.sleep(PAUSE_SECONDS)
    return micros


def timed_sync(calls: int, call: Callable[[], object]) -> list[float]:
    micros = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        micros.append((time.perf_counter() - started) * 1e6)
        time.sleep(PAUSE_SECONDS)  # a plain script, no event loop to block
    return micros


async def async_rows(url: str, calls: int) -> list[tuple[str, str]]:
    async with open_database(url, max_size=2) as database:
        await timed_async(50, lambda: database.fetch_one("ping"))  # warm: prepared, pooled
        ping = await timed_async(calls, lambda: database.fetch_one("ping"))
    with psycopg.connect(url, autocommit=True) as connection:

        def select() -> object:
            return connection.execute("SELECT 1 AS ok").fetchall()

        in_thread = await timed_async(calls, lambda: trio.to_thread.run_sync(select))
    return [
        ("SELECT 1, async API on trio-asyncio (the service)", summary(ping)),
        ("SELECT 1, sync API in trio.to_thread (alternative)", summary(in_thread)),
    ]


def sync_rows(url: str, calls: int) -> list[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE bench_commit (id serial PRIMARY KEY, v text)")
        timed_sync(50, lambda: connection.execute("SELECT 1 AS ok").fetchall())
        ping = timed_sync(calls, lambda: connection.execute("SELECT 1 AS ok").fetchall())
        insert = timed_sync(
            calls, lambda: connection.execute("INSERT INTO bench_commit (v) VALUES ('x')")
        )
    return [
        ("SELECT 1, sync API", summary(ping)),
        ("single-row INSERT + commit, sync API", summary(insert)),
    ]


if __name__ == "__main__":
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with servers() as env:
        url = env.cluster.create_database()
        rows = trio.run(async_rows, url, calls) + sync_rows(url, calls)
        print(table(f"one database round trip at idle, {calls} calls each", rows))
