"""Enqueue throughput and latency at 32 and 64 connections, beside the framework's own ceiling
measured in the same run (a no-database route on the same server stack).

    python -m bench.enqueue [SECONDS]        (needs wrk: apt-get install wrk)
"""

from __future__ import annotations

import sys

import trio

from bench.common import (
    CpuMeter,
    Servers,
    server_process,
    servers,
    table,
)
from bench.wrk import ENQUEUE_SCRIPT, WrkResult, available, run_wrk
from bgchallenge.embedded import free_port
from tests.support.processes import ServiceProcess
from tests.support.results import fetch_rows


def load(url: str, seconds: int, job_prefix: str) -> tuple[dict[int, WrkResult], str]:
    """Enqueue at 32 and 64 connections, each run with job ids of its own; answer the results
    and the CPU each process used per request."""
    cpu = CpuMeter()
    results = {
        c: run_wrk(
            url,
            connections=c,
            seconds=seconds,
            script=ENQUEUE_SCRIPT.replace("JOB", f'"{job_prefix}{c}"'),
        )
        for c in (32, 64)
    }
    requests = sum(r.requests for r in results.values())
    return results, cpu.per_item(requests)


def measure(env: Servers, seconds: int) -> None:
    rows = []
    with server_process("bench.ceiling", str(free_port())) as ceiling_url:
        ceiling, ceiling_cpu = load(ceiling_url, seconds, "c")
    settings = env.fresh_settings()
    assert settings.database_url
    service = ServiceProcess(settings, "web")
    try:
        base = trio.run(service.wait_ready)["addresses"][0]
        ours, our_cpu = load(base, seconds, "s")
    finally:
        service.close()
    stored = len(fetch_rows(settings.database_url, "true"))
    for c in (32, 64):
        rows += [
            (
                f"ceiling, {c} connections",
                f"{ceiling[c].per_second:.0f} req/s, "
                f"p50 {ceiling[c].p50_ms:.1f} ms, p99 {ceiling[c].p99_ms:.1f} ms",
            ),
            (
                f"enqueue, {c} connections",
                f"{ours[c].per_second:.0f} req/s, "
                f"p50 {ours[c].p50_ms:.1f} ms, p99 {ours[c].p99_ms:.1f} ms, "
                f"non-2xx {ours[c].non_2xx}",
            ),
            (f"ratio, {c} connections", f"{ours[c].per_second / ceiling[c].per_second:.0%}"),
        ]
    accepted = sum(r.requests - r.non_2xx for r in ours.values())
    rows.append(("rows stored / 202s answered", f"{stored} / {accepted}"))
    rows.append(("CPU per request, ceiling", ceiling_cpu))
    rows.append(("CPU per request, enqueue", our_cpu))
    print(table(f"enqueue, wrk -t1, {seconds} s per run", rows))


if __name__ == "__main__":
    if not available():
        sys.exit("bench.enqueue needs wrk: apt-get install wrk")
    with servers() as env:
        measure(env, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
