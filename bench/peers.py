"""The service beside what a user would otherwise build, in one run: the same job on PgQueuer,
on Procrastinate, and as a plain script (`bench.peer_job`: HEAD, streaming GET, sha256, PutObject,
one row update; 16 at a time), against the same origin, moto S3 server and PostgreSQL server.

    python -m bench.peers [COUNT] [COUNT_1MIB] [--rounds N]
    (defaults 1000 x 50 KiB, 200 x 1 MiB, one round)

Each implementation gets a database and a bucket of its own. The service runs in the Procfile's
layout (a web process and a worker process with 16 workers) and is enqueued to as
`bench.throughput` does (its rows inserted in one batch); each queue library enqueues in one
batch through its own API; the plain script reads the items. The clock runs from just before
the enqueue (or the script's start) to the last row's completion time in PostgreSQL. Every
object is then read back from the bucket and its size and sha256 checked, as is every row.

CPU per result is user + system time of the processes involved, with their descendants, from
/proc: the implementation's processes, the PostgreSQL server (postmaster and every backend,
including those that exited meanwhile), and the moto and origin servers; not this process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import LiteralString

import boto3
import psycopg
import trio

from bench.common import (
    Servers,
    child_pids,
    origin_process,
    servers,
    tree_cpu_seconds,
)
from bench.peer_job import CONCURRENCY, ITEMS_TABLE
from tests.support.origin import body_sha256
from tests.support.processes import ServiceProcess
from tests.support.results import fetch_rows, insert_results

PEERS = ("pgqueuer", "procrastinate")
SCRIPT = "script"
SERVICE = "bgchallenge"
SIZES = {"50 KiB": 50 * 1024, "1 MiB": 1024 * 1024}
SETTLE_SECONDS = 1.0  # between an implementation's readiness and the enqueue
STALLED_SECONDS = 60.0  # without a result done: one has failed


@dataclass
class Run:
    name: str
    per_second: float
    cpu_ms: dict[str, float]  # per result, by group of processes


def postmaster_pid(database_url: str) -> int:
    """The PostgreSQL server's process: the parent of a backend (read while it lives)."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        status = Path(f"/proc/{row[0]}/status").read_text()
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise RuntimeError("no PostgreSQL server process found")


class CpuWindow:
    """CPU used from now on by an implementation's processes, PostgreSQL, and the other
    servers this benchmark started (moto, origin)."""

    def __init__(self, implementation: list[int], postmaster: int) -> None:
        others = [
            pid
            for pid in child_pids(os.getpid())
            if pid not in implementation and pid != postmaster
        ]
        self.roots = {
            "implementation": implementation,
            "PostgreSQL": [postmaster],
            "S3 + origin": others,
        }
        self.before = tree_cpu_seconds(self.roots)

    def per_result(self, count: int) -> dict[str, float]:
        after = tree_cpu_seconds(self.roots)
        return {name: (after[name] - self.before[name]) * 1000 / count for name in after}


def verify_bucket(endpoint: str, bucket: str, keys: set[str], size: int) -> None:
    """Every object there, and only those, each with the origin's body."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    expected = body_sha256(size)
    found = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for listed in page.get("Contents", []):
            key = listed["Key"]
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if len(body) != size or hashlib.sha256(body).hexdigest() != expected:
                raise RuntimeError(f"{bucket}/{key}: {len(body)} bytes, not the origin's")
            found.add(key)
    if found != keys:
        raise RuntimeError(f"{bucket}: {len(found)} objects, {len(found ^ keys)} keys differ")


TERMINAL: LiteralString = (
    "SELECT count(*) FROM results WHERE status IN ('succeeded', 'failed', 'canceled')"
)


def check_running(processes: list[ServiceProcess]) -> None:
    for process in processes:
        if process.process.poll() is not None:
            raise RuntimeError(f"{SERVICE} exited:\n{process.logs()}")


async def service_run(env: Servers, origin_url: str, count: int, size: int) -> Run:
    settings = env.fresh_settings()
    url = settings.database_url
    assert url
    urls = [f"{origin_url}/files/s{n}.png?size={size}" for n in range(count)]
    processes = [
        ServiceProcess(settings, "web"),
        ServiceProcess(settings, "worker", BGC_WORKERS=str(CONCURRENCY)),
    ]
    try:
        for process in processes:
            await process.wait_ready()
        await trio.sleep(SETTLE_SECONDS)
        cpu = CpuWindow([p.pid for p in processes], postmaster_pid(url))
        started = datetime.now(UTC)
        await trio.to_thread.run_sync(insert_results, url, urls)
        await wait_done(url, TERMINAL, count, lambda: check_running(processes))
        cpu_ms = cpu.per_result(count)
        rows = await trio.to_thread.run_sync(fetch_rows, url)
    finally:
        for process in processes:
            process.close()
    expected = body_sha256(size)
    for row in rows:
        if (row["status"], row["storage_size"], row["storage_sha256"]) != (
            "succeeded",
            size,
            expected,
        ):
            raise RuntimeError(f"{SERVICE}: result {row['id']} is {row['status']}")
    keys = {str(row["storage_key"]) for row in rows}
    await trio.to_thread.run_sync(verify_bucket, env.s3_endpoint, settings.s3_bucket, keys, size)
    span = max(row["ended_at"] for row in rows) - started
    return Run(SERVICE, count / span.total_seconds(), cpu_ms)


def _prepare_items(database_url: str, urls: list[str]) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute(ITEMS_TABLE)
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO items (id, url) VALUES (%s, %s)", list(enumerate(urls)))


def _count(connection: psycopg.Connection[tuple[int]], query: LiteralString) -> int:
    row = connection.execute(query).fetchone()
    assert row is not None
    return int(row[0])


async def wait_done(
    database_url: str, query: LiteralString, count: int, check: Callable[[], None]
) -> None:
    """Poll ``query`` (a count) until it reaches ``count``, calling ``check`` between polls.
    One connection throughout: a connection per poll would charge PostgreSQL's CPU with a
    backend's start-up twenty times a second."""
    connect = functools.partial(psycopg.connect, database_url, autocommit=True)
    connection = await trio.to_thread.run_sync(connect)
    try:
        done, moved = 0, trio.current_time()
        while done < count:
            check()
            if trio.current_time() - moved > STALLED_SECONDS:
                raise RuntimeError(f"{done} of {count} done, none for {STALLED_SECONDS:.0f} s")
            await trio.sleep(0.05)
            now = await trio.to_thread.run_sync(_count, connection, query)
            if now > done:
                done, moved = now, trio.current_time()
    finally:
        connection.close()


def _rows(database_url: str) -> list[tuple[int, int, str, datetime]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT id, size, sha256, done_at FROM items").fetchall()


class PeerProcess:
    """``python -m bench.peer_NAME`` (`bench.peer_job` tells how it is driven)."""

    def __init__(self, name: str, database_url: str, s3_endpoint: str, bucket: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"bench.peer_{name}", database_url, s3_endpoint, bucket],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = await trio.to_thread.run_sync(self.process.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"{self.name}: said {line!r} instead of ready")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.process.returncode}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


async def peer_run(env: Servers, origin_url: str, name: str, count: int, size: int) -> Run:
    settings = env.fresh_settings()
    url = settings.database_url
    assert url
    urls = [f"{origin_url}/files/{name}{n}.png?size={size}" for n in range(count)]
    await trio.to_thread.run_sync(_prepare_items, url, urls)
    peer = PeerProcess(name, url, env.s3_endpoint, settings.s3_bucket)
    try:
        await peer.wait_ready()
        await trio.sleep(SETTLE_SECONDS)
        cpu = CpuWindow([peer.pid], postmaster_pid(url))
        started = datetime.now(UTC)
        peer.go()
        await wait_done(url, "SELECT count(done_at) FROM items", count, peer.check_running)
        cpu_ms = cpu.per_result(count)
    finally:
        peer.close()
    rows = await trio.to_thread.run_sync(_rows, url)
    expected = body_sha256(size)
    for item_id, item_size, sha256, _ in rows:
        if (item_size, sha256) != (size, expected):
            raise RuntimeError(f"{name}: item {item_id} has {item_size} bytes, {sha256}")
    keys = {str(row[0]) for row in rows}
    await trio.to_thread.run_sync(verify_bucket, env.s3_endpoint, settings.s3_bucket, keys, size)
    span = max(row[3] for row in rows) - started
    return Run(name, count / span.total_seconds(), cpu_ms)


ORDER = (SCRIPT, *PEERS, SERVICE)


def ratios(runs: list[Run]) -> dict[str, tuple[float, float]]:
    """Each implementation's results/s over the faster peer's and over the plain script's."""
    by_name = {run.name: run.per_second for run in runs}
    faster_peer = max(by_name[name] for name in PEERS)
    return {name: (rate / faster_peer, rate / by_name[SCRIPT]) for name, rate in by_name.items()}


def report(title: str, runs: list[Run]) -> str:
    lines = [
        f"### {title}",
        "",
        "| implementation | results/s | vs faster peer | vs plain script "
        "| CPU ms per result: implementation / PostgreSQL / S3 + origin / total |",
        "| --- | --- | --- | --- | --- |",
    ]
    relative = ratios(runs)
    for run in sorted(runs, key=lambda run: ORDER.index(run.name)):
        cpu = " / ".join(f"{ms:.1f}" for ms in run.cpu_ms.values())
        peer, script = relative[run.name]
        lines.append(
            f"| {run.name} | {run.per_second:.1f} | {peer:.2f}x "
            f"| {script:.2f}x | {cpu} / {sum(run.cpu_ms.values()):.1f} |"
        )
    return "\n".join(lines)


def span(values: list[float], unit: str = "", digits: int = 2) -> str:
    low, high = (f"{value:.{digits}f}" for value in (min(values), max(values)))
    return f"{low}{unit}" if low == high else f"{low}\u2013{high}{unit}"


def summary(title: str, rounds: list[list[Run]]) -> str:
    lines = [
        f"### {title}: ranges over {len(rounds)} rounds",
        "",
        "| implementation | results/s | vs faster peer | vs plain script | CPU ms per result |",
        "| --- | --- | --- | --- | --- |",
    ]
    relative = [ratios(runs) for runs in rounds]
    for name in ORDER:
        runs = [run for runs in rounds for run in runs if run.name == name]
        lines.append(
            f"| {name} | {span([r.per_second for r in runs], digits=1)} "
            f"| {span([r[name][0] for r in relative], 'x')} "
            f"| {span([r[name][1] for r in relative], 'x')} "
            f"| {span([sum(r.cpu_ms.values()) for r in runs], digits=1)} |"
        )
    return "\n".join(lines)


async def one_run(env: Servers, origin_url: str, name: str, count: int, size: int) -> Run:
    if name == SERVICE:
        return await service_run(env, origin_url, count, size)
    return await peer_run(env, origin_url, name, count, size)


async def measure(env: Servers, origin_url: str, counts: dict[str, int], rounds: int) -> None:
    """Each round runs the implementations in another order, so that a drift in the machine's
    load does not always weigh on the same one."""
    print(f"## bench.peers ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()})\n")
    for label, size in SIZES.items():
        title = f"{counts[label]} x {label}, {CONCURRENCY} at a time"
        done = []
        for round_ in range(rounds):
            order = ORDER[round_ % len(ORDER) :] + ORDER[: round_ % len(ORDER)]
            runs = [await one_run(env, origin_url, name, counts[label], size) for name in order]
            done.append(runs)
            heading = f"{title}, round {round_ + 1} (run in the order {', '.join(order)})"
            print(report(heading, runs) + "\n", flush=True)
        if rounds > 1:
            print(summary(title, done) + "\n", flush=True)


USAGE = "usage: python -m bench.peers [COUNT] [COUNT_1MIB] [--rounds N]"


def arguments_from(arguments: list[str]) -> tuple[dict[str, int], int]:
    """The count of each size and the number of rounds (defaults 1000, 200 and 1)."""
    rounds = "1"
    if "--rounds" in arguments:
        at = arguments.index("--rounds")
        rounds = arguments[at + 1] if at + 1 < len(arguments) else ""
        arguments = arguments[:at] + arguments[at + 2 :]
    try:
        given = [int(a) for a in [*arguments, rounds]]
    except ValueError:
        raise SystemExit(USAGE) from None
    if len(given) > 3 or any(n < 1 for n in given):
        raise SystemExit(USAGE + " (positive whole numbers)")
    *counts, rounds_count = given
    defaults = [1000, 200]
    return dict(zip(SIZES, counts + defaults[len(counts) :], strict=True)), rounds_count


if __name__ == "__main__":
    counts, rounds = arguments_from(sys.argv[1:])
    with servers() as env, origin_process() as origin_url:
        trio.run(measure, env, origin_url, counts, rounds)
