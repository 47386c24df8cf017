"""End-to-end results/s for 50 KiB images with 16 workers, beside the machine's raw limit:
a plain script doing the same GET + PutObject at the same concurrency.

    python -m bench.throughput [COUNT]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import boto3
import httpx
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


async def service_rate(env: Servers, origin_url: str, count: int) -> Rate:
    settings = env.fresh_settings()
    assert settings.database_url
    service = ServiceProcess(settings, "worker", BGC_WORKERS=str(CONCURRENCY))
    try:
        await service.wait_ready()
        urls = [f"{origin_url}/files/t{n}.png?size={SIZE}" for n in range(count)]
        cpu = CpuMeter()
        insert_results(settings.database_url, urls)
        await wait_until_terminal(settings.database_url, count, within=600)
        cpu_per_result = cpu.per_item(count)
        rows = fetch_rows(settings.database_url)
    finally:
        service.close()
    assert {r["status"] for r in rows} == {"succeeded"}
    span = max(r["ended_at"] for r in rows) - min(r["created_at"] for r in rows)
    return Rate(count / span.total_seconds(), cpu_per_result)


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


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with servers() as env, origin_process() as origin_url:
        trio.run(measure, env, origin_url, count)
