"""End-to-end results/s with 16 workers in the Procfile layout (a web process and a worker
process), beside a plain script doing what a result needs at the same concurrency: HEAD + GET
+ sha256 + PutObject (trio + httpx + boto3 in threads). For 50 KiB and 1 MiB images, in
alternating rounds; the results are inserted straight into the database (the web process is
there as in production, not on the path). Also: CPU per result of the service's processes and
of the script, and the worker's claim and outcome-write latencies (from its /metrics).

    python -m bench.throughput [COUNT] [--rounds N] [--size 50k|1m] [--profile DIR]
                               [--baseline DIR]
    python -m bench.throughput [COUNT] --progress

COUNT 50 KiB images a round (default 1000), COUNT / 4 of 1 MiB. ``--profile DIR`` records the
worker process with py-spy (``pip install py-spy``), one raw flame file per run.
``--baseline DIR`` runs the service a second time each round from another checkout of the code
(``git worktree add DIR COMMIT``), for before/after ratios measured in the same run.

``--progress`` measures instead what progress writes cost: the same runs with
BGC_PROGRESS_SECONDS=1 (the default) and 86400 (no periodic progress write; the final one still
goes with the outcome), for COUNT 50 KiB images and for 64 slow 1 MiB downloads of about 4 s
each (where the periodic writes happen). Row updates per result come from PostgreSQL's
statistics of the results table.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import psycopg
import trio
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

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
SIZES = {"50k": (SIZE, "50 KiB", 1), "1m": (1024 * 1024, "1 MiB", 4)}  # size, name, COUNT / n
PROCFILE = ("web", "worker")
LATENCY_OPERATIONS = ("claim", "outcome")


@dataclass
class Rate:
    per_second: float
    cpu: str  # CPU per result, by process group
    updates: float = 0.0  # row updates of the results table per result
    own_cpu: str = ""  # CPU per result of the service's processes and its database's backends
    own_ms: float = 0.0  # CPU per result of the service's processes, or of the plain script
    latencies: dict[str, str] = field(default_factory=dict)  # operation: "p50 …, p99 …"


async def service_rate(
    env: Servers,
    origin_url: str,
    count: int,
    *,
    size: int = SIZE,
    knobs: str = "",
    service_env: dict[str, str] | None = None,
    roles: tuple[str, ...] = ("worker",),
    profile: Path | None = None,
    code: Path | None = None,
) -> Rate:
    """The last of ``roles`` runs the workers."""
    settings = env.fresh_settings()
    assert settings.database_url
    # `python -m` finds the package in the working directory first
    with contextlib.chdir(code or Path.cwd()):
        processes = [
            ServiceProcess(settings, role, BGC_WORKERS=str(CONCURRENCY), **(service_env or {}))
            for role in roles
        ]
    recorder: subprocess.Popen[bytes] | None = None
    try:
        ready = [await process.wait_ready() for process in processes]
        worker_url = ready[-1]["addresses"][0]
        urls = [f"{origin_url}/files/t{n}.png?size={size}{knobs}" for n in range(count)]
        if profile is not None:
            recorder = _record_profile(processes[-1].pid, profile)
        cpu = CpuMeter()
        own = OwnCpu(
            {role: p.pid for role, p in zip(roles, processes, strict=True)}, settings.database_url
        )
        insert_results(settings.database_url, urls)
        await wait_until_terminal(settings.database_url, count, within=600)
        cpu_per_result = cpu.per_item(count)
        own_ms, own_cpu = own.per_item(count)
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            await trio.to_thread.run_sync(recorder.wait)
        latencies = await worker_latencies(worker_url)
        rows = fetch_rows(settings.database_url)
    finally:
        for process in processes:
            process.close()
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
    assert {r["status"] for r in rows} == {"succeeded"}
    span = max(r["ended_at"] for r in rows) - min(r["created_at"] for r in rows)
    updates = await settled_updates(settings.database_url)
    return Rate(
        count / span.total_seconds(), cpu_per_result, updates / count, own_cpu, own_ms, latencies
    )


def _record_profile(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``path`` (raw flame format) until interrupted: only the
    thread holding the GIL, so that threads waiting in a blocking call do not count."""
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--gil",
            "--nonblocking",
            "-f",
            "raw",
            "-o",
            str(path),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def histogram_quantile(buckets: list[tuple[float, float]], fraction: float) -> float:
    """The ``fraction`` quantile of a Prometheus histogram's cumulative ``(le, count)``
    buckets, interpolated linearly within its bucket (as PromQL's histogram_quantile)."""
    total = buckets[-1][1]
    rank = fraction * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, cumulative
    return lower


async def worker_latencies(base_url: str) -> dict[str, str]:
    """p50 and p99 of the worker's claims and outcome writes, from bgc_worker_database_seconds."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        text = (await client.get("/metrics")).text
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "bgc_worker_database_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                operation = sample.labels["operation"]
                upper = float(sample.labels["le"])
                buckets.setdefault(operation, []).append((upper, sample.value))
    answers = {}
    for operation in LATENCY_OPERATIONS:
        found = sorted(buckets.get(operation, []))
        if not found or not found[-1][1]:
            answers[operation] = "none"
            continue
        p50, p99 = (histogram_quantile(found, q) * 1000 for q in (0.5, 0.99))
        answers[operation] = f"p50 {p50:.1f}, p99 {p99:.1f} ms ({found[-1][1]:.0f} calls)"
    return answers


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
    """CPU of the service's processes and of the PostgreSQL backends serving its database only:
    the machine-wide groups of `CpuMeter` also count other programs' servers of the same
    kind (a shared PostgreSQL, other test runs), which this does not."""

    def __init__(self, service_pids: dict[str, int], database_url: str) -> None:
        self.service_pids = service_pids  # by role
        self.database_url = database_url
        self.service = {role: _cpu_seconds(pid) for role, pid in service_pids.items()}
        self.backends = {pid: _cpu_seconds(pid) for pid in _backend_pids(database_url)}

    def per_item(self, items: int) -> tuple[float, str]:
        """The service's milliseconds per item, and a line with each process's and its
        backends'."""
        by_role = {
            role: (_cpu_seconds(pid) - self.service[role]) * 1000 / items
            for role, pid in self.service_pids.items()
        }
        service = sum(by_role.values())
        backends = sum(
            _cpu_seconds(pid) - self.backends.get(pid, 0.0)
            for pid in _backend_pids(self.database_url)
        )
        roles = ", ".join(f"{role} {ms:.2f}" for role, ms in by_role.items())
        line = (
            f"service {service:.2f} ({roles}), its PostgreSQL backends"
            f" {backends * 1000 / items:.2f} ms"
        )
        return service, line


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


async def raw_rate(env: Servers, origin_url: str, count: int, size: int = SIZE) -> Rate:
    """A plain script: HEAD + GET + sha256 + PutObject per result, CONCURRENCY at a time."""
    bucket = env.fresh_settings().s3_bucket
    s3 = boto3.client(
        "s3", endpoint_url=env.s3_endpoint, config=Config(max_pool_connections=CONCURRENCY)
    )
    limiter = trio.CapacityLimiter(CONCURRENCY)
    todo = iter(range(count))
    async with httpx.AsyncClient() as client:

        async def copier() -> None:
            for n in todo:
                url = f"{origin_url}/files/r{n}.png?size={size}"
                (await client.head(url)).raise_for_status()
                response = (await client.get(url)).raise_for_status()
                body = response.content
                digest = hashlib.sha256(body).hexdigest()
                await trio.to_thread.run_sync(
                    lambda: s3.put_object(
                        Bucket=bucket,
                        Key=f"r{n}",  # noqa: B023
                        Body=body,  # noqa: B023
                        ContentType=response.headers["Content-Type"],  # noqa: B023
                        Metadata={"sha256": digest},  # noqa: B023
                    ),
                    limiter=limiter,
                )

        cpu = CpuMeter()
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(copier)
        per_second = count / (time.monotonic() - started)
        return Rate(per_second, cpu.per_item(count), own_ms=cpu.used_ms(count)["benchmark"])


async def measure(
    env: Servers,
    origin_url: str,
    count: int,
    rounds: int,
    sizes: list[str],
    profile: Path | None,
    baseline: Path | None,
) -> None:
    """Each round runs the script and the service (and the baseline's) for each size; the
    order swaps from round to round, so that a drift in the machine's load weighs on all alike."""
    rows = []
    for number in range(1, rounds + 1):
        for size_name in sizes:
            size, name, divisor = SIZES[size_name]
            items = max(count // divisor, CONCURRENCY)
            runs: list[tuple[str, Path | None]] = [("service", None)]
            if baseline is not None:
                runs.append(("baseline", baseline))
            if not number % 2:
                runs.reverse()
            raw = await raw_rate(env, origin_url, items, size)
            rates = {
                label: await service_rate(
                    env,
                    origin_url,
                    items,
                    size=size,
                    roles=PROCFILE,
                    profile=profile / f"{label}-{size_name}-{number}.txt" if profile else None,
                    code=code,
                )
                for label, code in runs
            }
            rows.append(
                (f"round {number}, {items} x {name}, plain script", f"{raw.per_second:.0f}/s")
            )
            for label, ours in sorted(rates.items(), reverse=True):
                rows += [
                    (
                        f"  {label}",
                        f"{ours.per_second:.0f}/s (**{ours.per_second / raw.per_second:.0%}**); "
                        f"CPU per result {ours.own_ms:.2f} vs {raw.own_ms:.2f} ms "
                        f"(**{ours.own_ms / raw.own_ms:.2f}x**)",
                    ),
                    (f"  {label}, CPU per result", ours.own_cpu),
                ]
                rows += [(f"  {label}, {op}", latency) for op, latency in ours.latencies.items()]
    print(
        table(
            f"end-to-end, {CONCURRENCY} workers, Procfile layout, vs a plain HEAD + GET + sha256 "
            "+ PutObject script",
            rows,
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


def _option(arguments: list[str], name: str) -> str | None:
    if name not in arguments:
        return None
    at = arguments.index(name)
    value = arguments[at + 1]
    del arguments[at : at + 2]
    return value


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--progress"]
    rounds = int(_option(arguments, "--rounds") or 1)
    size_option = _option(arguments, "--size")
    profile_option = _option(arguments, "--profile")
    baseline_option = _option(arguments, "--baseline")
    count = int(arguments[0]) if arguments else 1000
    with servers() as env, origin_process() as origin_url:
        if "--progress" in sys.argv:
            trio.run(measure_progress, env, origin_url, count)
        else:
            profile = Path(profile_option) if profile_option else None
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
            sizes = [size_option] if size_option else list(SIZES)
            baseline = Path(baseline_option).resolve() if baseline_option else None
            trio.run(measure, env, origin_url, count, rounds, sizes, profile, baseline)
