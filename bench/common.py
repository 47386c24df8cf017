"""What every benchmark needs: real servers on loopback, started here, stopped at the end.

PostgreSQL (embedded, or BENCH_DATABASE_URL), moto's S3 server, and the tests' origin server.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import trio

from bgchallenge.embedded import running_s3_server, set_fake_aws_credentials, start_postgres
from bgchallenge.settings import Settings
from tests.support.origin import Origin, serve_origin
from tests.support.servers import PostgresCluster

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass
class Servers:
    cluster: PostgresCluster
    s3_endpoint: str

    def fresh_settings(self, **changes: object) -> Settings:
        bucket = f"bench-{os.getpid()}-{datetime.now(UTC):%H%M%S%f}"
        boto3.client("s3", endpoint_url=self.s3_endpoint).create_bucket(Bucket=bucket)
        settings = Settings(
            database_url=self.cluster.create_database(),
            s3_endpoint_url=self.s3_endpoint,
            s3_bucket=bucket,
            port=0,
            allow_networks=LOOPBACK,
        )
        return Settings(**{**settings.__dict__, **changes})


@contextmanager
def servers() -> Iterator[Servers]:
    set_fake_aws_credentials()
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        url = start_postgres(Path(tempfile.mkdtemp(prefix="bgc-bench-")) / "pgdata").get_uri()
    cluster = PostgresCluster(url)
    try:
        with running_s3_server() as endpoint:
            yield Servers(cluster, endpoint)
    finally:
        cluster.close()


@asynccontextmanager
async def running_origin() -> AsyncIterator[Origin]:
    async with trio.open_nursery() as nursery:
        origin: Origin = await nursery.start(serve_origin, Origin())
        yield origin
        nursery.cancel_scope.cancel()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):.2f}  p99 {percentile(values, 0.99):.2f}  "
        f"mean {statistics.fmean(values):.2f}"
    )


def machine() -> str:
    return f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}"


def table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"## {title} ({datetime.now(UTC):%Y-%m-%d}, {machine()})", ""]
    lines += [f"| {'measure'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


@contextmanager
def server_process(module: str, *args: str) -> Iterator[str]:
    """``python -m module args`` in a process of its own (so it does not share a core with the
    benchmark's client); yields the base URL it prints first."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def origin_process() -> AbstractContextManager[str]:
    """The tests' origin server (tests/support/origin.py) in its own process."""
    return server_process("tests.support.origin")


# Which processes on this machine each CPU figure covers, by a part of their command line.
CPU_GROUPS = (
    ("bgchallenge serve", "service"),
    ("moto.server", "S3 (moto)"),
    ("tests.support.origin", "origin"),
    ("postgres", "PostgreSQL"),
    ("bench.ceiling", "ceiling app"),
)


def _cpu_seconds_by_group() -> dict[str, float]:
    """CPU seconds (user + system, all threads) used so far by each group of processes, and by
    this benchmark process as "benchmark"."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {name: 0.0 for _, name in CPU_GROUPS} | {"benchmark": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        if int(entry.name) == os.getpid():
            totals["benchmark"] += seconds
            continue
        for marker, name in CPU_GROUPS:
            if marker in command:
                totals[name] += seconds
                break
    return totals


class CpuMeter:
    """The CPU each group of processes uses from now on. A process that exits before
    `per_item` is called is lost from the count, so call it before stopping anything."""

    def __init__(self) -> None:
        self.before = _cpu_seconds_by_group()

    def used_ms(self, items: int) -> dict[str, float]:
        """Milliseconds of CPU per item so far, by group."""
        after = _cpu_seconds_by_group()
        return {name: (after[name] - self.before[name]) * 1000 / items for name in after}

    def per_item(self, items: int) -> str:
        """Milliseconds of CPU per item so far, for each group that used any, and their total."""
        used = self.used_ms(items)
        parts = [f"{name} {ms:.2f}" for name, ms in used.items() if ms >= 0.01]
        return ", ".join(parts) + f"; total {sum(used.values()):.2f} ms"


def _processes() -> dict[int, tuple[int, float]]:
    """Every process's parent and CPU seconds: its own (user + system, all threads) and that of
    its children it has reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        seconds = sum(int(field) for field in fields[11:15]) / ticks
        found[int(entry.name)] = (int(fields[1]), seconds)
    return found


def child_pids(parent: int) -> list[int]:
    return [pid for pid, (ppid, _) in _processes().items() if ppid == parent]


def tree_cpu_seconds(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each named group of processes, with all their descendants (those
    that exited and were reaped within the group included)."""
    found = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in found.items():
        children.setdefault(parent, []).append(pid)
    totals = {}
    for name, pids in roots.items():
        todo, total = list(pids), 0.0
        while todo:
            pid = todo.pop()
            total += found.get(pid, (0, 0.0))[1]
            todo += children.get(pid, [])
        totals[name] = total
    return totals
