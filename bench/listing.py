"""GET /results/list over 10,000 results: requests/s for 200 pages and for 304s.

python -m bench.listing
"""

from __future__ import annotations

import httpx
import psycopg
import trio

from bench.common import (
    CpuMeter,
    Servers,
    describe,
    server_process,
    servers,
    table,
)
from bench.load import run_load
from bench.wrk import available, run_wrk
from bgchallenge.embedded import free_port
from tests.support.processes import ServiceProcess

RESULTS = 10_000
CONNECTIONS = 16
SECONDS = 10.0


def fill(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO results (job_id, host, object_path, url) "
            "SELECT 'job-' || (n %% 100), 'cdn.example.com', '/' || n || '.png', "
            "       'https://cdn.example.com/' || n || '.png' "
            "  FROM generate_series(1, %s) AS n",
            (RESULTS,),
        )


async def measure(env: Servers) -> None:
    settings = env.fresh_settings()
    assert settings.database_url
    fill(settings.database_url)
    service = ServiceProcess(settings, "web")
    try:
        base = (await service.wait_ready())["addresses"][0]
        async with httpx.AsyncClient(base_url=base) as client:
            etag = (await client.get("/results/list")).headers["ETag"]
        pages = await run_load(
            base,
            lambda n: ("GET", "/results/list", {}, None),
            connections=CONNECTIONS,
            seconds=SECONDS,
        )
        not_modified = await run_load(
            base,
            lambda n: ("GET", "/results/list", {"If-None-Match": etag}, None),
            connections=CONNECTIONS,
            seconds=SECONDS,
        )
        wrk_rows = measure_with_wrk(base, etag) if available() else []
    finally:
        service.close()
    assert set(pages.statuses) == {200} and set(not_modified.statuses) == {304}
    rows = [
        ("httpx client: 200, 100 items a page", f"{pages.per_second:.0f} req/s"),
        ("httpx client: 200 latency ms", describe(pages.latencies_ms)),
        ("httpx client: 304", f"{not_modified.per_second:.0f} req/s"),
        ("httpx client: 304 latency ms", describe(not_modified.latencies_ms)),
        *wrk_rows,
    ]
    print(table(f"list over {RESULTS} results, {CONNECTIONS} connections", rows))


def measure_with_wrk(base: str, etag: str) -> list[tuple[str, str]]:
    url = base + "/results/list"
    seconds = int(SECONDS)
    pages = run_wrk(url, connections=CONNECTIONS, seconds=seconds)
    cpu = CpuMeter()
    ours = run_wrk(url, connections=CONNECTIONS, seconds=seconds, headers={"If-None-Match": etag})
    our_cpu = cpu.per_item(ours.requests)
    with server_process("bench.ceiling", str(free_port())) as ceiling_url:
        cpu = CpuMeter()
        ceiling = run_wrk(
            ceiling_url + "/results/list",
            connections=CONNECTIONS,
            seconds=seconds,
            headers={"If-None-Match": '"x"'},
        )
        ceiling_cpu = cpu.per_item(ceiling.requests)
    return [
        ("wrk: 200, 100 items a page", f"{pages.per_second:.0f} req/s, p99 {pages.p99_ms:.0f} ms"),
        ("wrk: 304", f"{ours.per_second:.0f} req/s, p99 {ours.p99_ms:.1f} ms"),
        ("wrk: framework ceiling for a 304", f"{ceiling.per_second:.0f} req/s"),
        ("wrk: 304 / ceiling", f"{ours.per_second / ceiling.per_second:.0%}"),
        ("CPU per 304", our_cpu),
        ("CPU per 304, ceiling", ceiling_cpu),
    ]


if __name__ == "__main__":
    with servers() as env:
        trio.run(measure, env)
