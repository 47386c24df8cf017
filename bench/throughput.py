"""End-to-end results/s for 50 KiB images with 16 workers, beside the machine's raw limit:
a plain script doing the same GET + PutObject at the same concurrency.

    python -m bench.throughput [COUNT]
    python -m bench.throughput [COUNT] --progress

``--progress`` measures instead what progress writes cost: the same runs with
BGC_PROGRESS_SECONDS=1 (the default) and 86400 (no periodic progress write; the final one still
goes with the outcome), for COUNT 50 KiB images and for 64 slow 1 MiB downloads of about 4 s
each (where the periodic writes happen). Row updates per result come from PostgreSQL's
statistics of the results table.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import psycopg
import trio
from botocore.config import Config

from bench.common import (
    CpuMeter,
    Servers,
    origin_process,
    servers,
    table,
)
from tests.support.processes import ServiceProcess
from tests.support.results import fetch_rows, insert_results, wait_until_terminal

CONCURRENCY = 16
SIZE = 50 * 1024


@dataclass
class Rate:
    per_second: float
    cpu: str  # CPU per result, by process group
    updates: float = 0.0  # row updates of the results table per result
    own_cpu: str = ""  # CPU per result of the service process and its database's backends


async def service_rate(
    env: Servers,
    origin_url: str,
    count: int,
    *,
    size: int = SIZE,
    knobs: str = "",
    service_env: dict[str, str] | None = None,
) -> Rate:
    settings = env.fresh_settings()
    assert settings.database_url
    service = ServiceProcess(
        settings, "worker", BGC_WORKERS=str(CONCURRENCY), **(service_env or {})
    )
    try:
        await service.wait_ready()
        urls = [f"{origin_url}/files/t{n}.png?size={size}{knobs}" for n in range(count)]
        cpu = CpuMeter()
        own = OwnCpu(service.pid, settings.database_url)
        insert_results(settings.database_url, urls)
        await wait_until_terminal(settings.database_url, count, within=600)
        cpu_per_result = cpu.per_item(count)
        own_cpu = own.per_item(count)
        rows = fetch_rows(settings.database_url)
    finally:
        service.close()
    assert {r["status"] for r in rows} == {"succeeded"}
    span = max(r["ended_at"] for r in rows) - min(r["created_at"] for r in rows)
    updates = await settled_updates(settings.database_url)
    return Rate(count / span.total_seconds(), cpu_per_result, updates / count, own_cpu)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # it exited meanwhile
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_pids(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(row[0]) for row in rows]


class OwnCpu:
    """CPU of the service process and of the PostgreSQL backends serving its database only:
    the machine-wide groups of `CpuMeter` also count other programs' servers of the same
    kind (a shared PostgreSQL, other test runs), which this does not."""

    def __init__(self, service_pid: int, database_url: str) -> None:
        self.service_pid = service_pid
        self.database_url = database_url
        self.service = _cpu_seconds(service_pid)
        self.backends = {pid: _cpu_seconds(pid) for pid in _backend_pids(database_url)}

    def per_item(self, items: int) -> str:
        service = (_cpu_seconds(self.service_pid) - self.service) * 1000 / items
        backends = sum(
            _cpu_seconds(pid) - self.backends.get(pid, 0.0)
            for pid in _backend_pids(self.database_url)
        )
        return f"service {service:.2f}, its PostgreSQL backends {backends * 1000 / items:.2f} ms"


def _updates(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'results'"
        ).fetchone()
        return int(row[0]) if row else 0


async def settled_updates(database_url: str) -> int:
    """The results table's row updates, once the stopped service's backends have reported
    theirs (a backend reports its statistics when it exits)."""
    seen = -1
    while True:
        now = await trio.to_thread.run_sync(_updates, database_url)
        if now == seen:
            return now
        seen = now
        await trio.sleep(1.0)


async def raw_rate(env: Servers, origin_url: str, count: int) -> Rate:
    bucket = env.fresh_settings().s3_bucket
    s3 = boto3.client(
        "s3", endpoint_url=env.s3_endpoint, config=Config(max_pool_connections=CONCURRENCY)
    )
    limiter = trio.CapacityLimiter(CONCURRENCY)
    todo = iter(range(count))
    async with httpx.AsyncClient() as client:

        async def copier() -> None:
            for n in todo:
                response = await client.get(f"{origin_url}/files/r{n}.png?size={SIZE}")
                body = response.content
                await trio.to_thread.run_sync(
                    lambda: s3.put_object(Bucket=bucket, Key=f"r{n}", Body=body),  # noqa: B023
                    limiter=limiter,
                )

        cpu = CpuMeter()
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(copier)
        per_second = count / (time.monotonic() - started)
        return Rate(per_second, cpu.per_item(count))


async def measure(env: Servers, origin_url: str, count: int) -> None:
    raw = await raw_rate(env, origin_url, count)
    ours = await service_rate(env, origin_url, count)
    print(
        table(
            f"end-to-end, {count} x 50 KiB, {CONCURRENCY} workers",
            [
                ("raw GET + PutObject", f"{raw.per_second:.0f} results/s"),
                ("bgchallenge", f"{ours.per_second:.0f} results/s"),
                ("ratio", f"{ours.per_second / raw.per_second:.0%}"),
                ("CPU per result, raw", raw.cpu.replace("benchmark", "script")),
                ("CPU per result, bgchallenge", ours.cpu),
            ],
        )
    )


SLOW_COUNT = 64
SLOW_SIZE = 1024 * 1024
SLOW_KNOBS = "&slow=0.25"  # one 64 KiB chunk every 0.25 s: about 4 s a download


async def measure_progress(env: Servers, origin_url: str, count: int) -> None:
    """Each setting twice, in the order A B B A, so that a drift in the machine's load over
    the run weighs on both alike."""
    rows = []
    for seconds in ("86400", "1", "1", "86400"):
        progress_env = {"BGC_PROGRESS_SECONDS": seconds}
        fast = await service_rate(env, origin_url, count, service_env=progress_env)
        slow = await service_rate(
            env,
            origin_url,
            SLOW_COUNT,
            size=SLOW_SIZE,
            knobs=SLOW_KNOBS,
            service_env=progress_env,
        )
        rows += [
            (
                f"{count} x 50 KiB, BGC_PROGRESS_SECONDS={seconds}",
                f"{fast.per_second:.0f} results/s, {fast.updates:.2f} row updates per result",
            ),
            ("  CPU per result", fast.own_cpu),
            (
                f"{SLOW_COUNT} x 1 MiB over ~4 s, BGC_PROGRESS_SECONDS={seconds}",
                f"{slow.per_second:.1f} results/s, {slow.updates:.2f} row updates per result",
            ),
            ("  CPU per result", slow.own_cpu),
        ]
    print(table(f"progress writes, {CONCURRENCY} workers", rows))


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--progress"]
    count = int(arguments[0]) if arguments else 1000
    with servers() as env, origin_process() as origin_url:
        trio.run(measure_progress if "--progress" in sys.argv else measure, env, origin_url, count)
