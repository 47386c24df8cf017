"""Pickup latency at idle: ``startedAt - createdAt`` over results enqueued one at a time, in
both layouts: one process with every role (``serve``, the dev default) and the Procfile's
(a web process and a worker process).

python -m bench.pickup [COUNT]
"""

from __future__ import annotations

import sys

import httpx
import trio

from bench.common import Servers, describe, origin_process, servers, table
from tests.support.processes import ServiceProcess
from tests.support.results import fetch_rows, wait_until_terminal

# The first role of each layout serves the API.
LAYOUTS = {
    "one process (role all)": ("all",),
    "Procfile layout (web + worker)": ("web", "worker"),
}


async def pickup_latencies(
    env: Servers, origin_url: str, count: int, roles: tuple[str, ...]
) -> list[float]:
    settings = env.fresh_settings()
    assert settings.database_url
    processes = [ServiceProcess(settings, role, BGC_WORKERS="8") for role in roles]
    try:
        readiness = [await process.wait_ready() for process in processes]
        async with httpx.AsyncClient(base_url=readiness[0]["addresses"][0]) as client:
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
        for process in processes:
            process.close()
    return [(r["started_at"] - r["created_at"]).total_seconds() * 1000 for r in rows]


async def measure(env: Servers, origin_url: str, count: int) -> None:
    rows = [("results per layout", str(count))]
    for layout, roles in LAYOUTS.items():
        latencies = await pickup_latencies(env, origin_url, count, roles)
        rows.append((f"{layout}, ms", describe(latencies)))
    print(table("pickup latency at idle (createdAt -> startedAt)", rows))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with servers() as env, origin_process() as origin_url:
        trio.run(measure, env, origin_url, count)
