"""A small closed-loop HTTP load generator: N connections, each sending back to back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import trio


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def run_load(
    base_url: str,
    make_request: Callable[[int], tuple[str, str, dict[str, str], bytes | None]],
    *,
    connections: int,
    seconds: float,
) -> LoadResult:
    """Send requests from ``connections`` clients for ``seconds``; ``make_request(n)`` gives
    (method, path, headers, body) for the n-th request."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def user() -> None:
            while time.monotonic() < deadline:
                method, path, headers, body = make_request(next(counter))
                started = time.perf_counter()
                response = await client.request(method, path, headers=headers, content=body)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(user)
        elapsed = time.monotonic() - started
    return LoadResult(len(latencies), elapsed, latencies, statuses)
