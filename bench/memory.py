"""Peak RSS growth of a worker process for 8 concurrent downloads of 2 MiB and of 20 MiB.

python -m bench.memory
"""

from __future__ import annotations

import trio

from bench.common import Servers, running_origin, servers, table
from tests.support.origin import Origin
from tests.support.processes import ServiceProcess
from tests.support.results import insert_results, wait_until_terminal

MIB = 1024 * 1024
CONCURRENT = 8


async def peak_growth_mib(env: Servers, origin: Origin, size: int) -> float:
    settings = env.fresh_settings()
    service = ServiceProcess(settings, "worker", BGC_WORKERS=str(CONCURRENT))
    try:
        await service.wait_ready()
        await trio.sleep(0.5)
        baseline = service.rss_kib("VmRSS")
        assert settings.database_url
        insert_results(
            settings.database_url,
            [origin.url(f"m{size}-{n}.png", size=size) for n in range(CONCURRENT)],
        )
        rows = await wait_until_terminal(settings.database_url, CONCURRENT, within=120)
        assert {r["status"] for r in rows} == {"succeeded"}, rows
        return (service.rss_kib("VmHWM") - baseline) / 1024
    finally:
        service.close()


async def measure(env: Servers) -> None:
    async with running_origin() as origin:
        small = await peak_growth_mib(env, origin, 2 * MIB)
        large = await peak_growth_mib(env, origin, 20 * MIB)
    print(
        table(
            "memory: peak RSS growth of one worker process",
            [
                (f"{CONCURRENT} x 2 MiB", f"{small:.1f} MiB"),
                (f"{CONCURRENT} x 20 MiB", f"{large:.1f} MiB"),
                ("20 MiB / 2 MiB", f"{large / small:.2f}" if small else "n/a"),
            ],
        )
    )


if __name__ == "__main__":
    with servers() as env:
        trio.run(measure, env)
