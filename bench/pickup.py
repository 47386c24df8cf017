"""Pickup latency at idle: ``startedAt - createdAt`` over results enqueued one at a time.

python -m bench.pickup [COUNT]
"""

from __future__ import annotations

import sys

import httpx
import trio

from bench.common import Servers, describe, origin_process, servers, table
from tests.support.processes import ServiceProcess
from tests.support.results import fetch_rows, wait_until_terminal


async def measure(env: Servers, origin_url: str, count: int) -> None:
    settings = env.fresh_settings()
    assert settings.database_url
    service = ServiceProcess(settings, "all", BGC_WORKERS="8")
    try:
        ready = await service.wait_ready()
        async with httpx.AsyncClient(base_url=ready["addresses"][0]) as client:
            for n in range(count):
                response = await client.post(
                    "/results/enqueue",
                    json={"jobId": "pickup", "url": f"{origin_url}/files/p{n}.png?size=1000"},
                )
                assert response.status_code == 202, response.text
                await trio.sleep(0.02)  # idle between results: each is picked up alone
        await wait_until_terminal(settings.database_url, count, within=120)
        rows = fetch_rows(settings.database_url)
    finally:
        service.close()
    latencies = [(r["started_at"] - r["created_at"]).total_seconds() * 1000 for r in rows]
    print(
        table(
            "pickup latency at idle (createdAt -> startedAt)",
            [
                ("results", str(count)),
                ("latency ms", describe(latencies)),
            ],
        )
    )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with servers() as env, origin_process() as origin_url:
        trio.run(measure, env, origin_url, count)
