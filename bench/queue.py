"""The work queue's transports side by side: one web and one worker process per transport
(``BGC_QUEUE=<name>``), tiny origin bodies, every result enqueued through HTTP.

- sustained results/s: COUNT results enqueued by 16 concurrent clients as fast as the web
  process takes them, from the first ``createdAt`` to the last ``endedAt``;
- pickup at idle: ``startedAt - createdAt`` over PICKUP results enqueued one at a time.

    python -m bench.queue [COUNT] [--transports postgres,sqs,...] [--pickup N]

By default every transport available: ``postgres``; ``sqs`` on the benchmark's moto server
(which serves S3 and SQS on one port); ``sqs-localstack`` only when LocalStack answers on
127.0.0.1:4566 (e.g. ``docker compose up localstack``), otherwise listed as skipped;
``rabbitmq`` when a RabbitMQ answers (as for the tests). Adding a
transport is one entry in `TRANSPORTS`: the environment its child processes get.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import httpx
import trio

from bench.common import CpuMeter, Servers, describe, origin_process, servers, table
from bgchallenge.queues.sqs import ensure_queue
from tests.support.processes import ServiceProcess
from tests.support.rabbitmq import DEFAULT_RABBITMQ_URL, rabbitmq_unreachable
from tests.support.results import fetch_rows, wait_until_terminal
from tests.support.servers import unique_name

CLIENTS = 16
WORKERS = "16"
LOCALSTACK = "http://127.0.0.1:4566"

# A transport's child environment for one run (a queue of its own), or None: not available.
Transport = Callable[[Servers], dict[str, str] | None]


def _sqs_at(endpoint: str) -> dict[str, str] | None:
    try:
        url = trio.run(ensure_queue, endpoint, unique_name("bench-"))
    except Exception:  # an unreachable endpoint, whatever boto3 makes of it
        return None
    return {
        "BGC_QUEUE": "sqs",
        "SQS_ENDPOINT_URL": endpoint,
        "SQS_QUEUE_URL": url,
        "BGC_SQS_WAIT_SECONDS": "5",
    }


def _rabbitmq() -> dict[str, str] | None:
    """The broker at $TEST_RABBITMQ_URL (else guest on 127.0.0.1:5672) when it answers. The
    run's queues (``bench-*``) stay on it: `rabbitmqctl delete_queue` them afterwards."""
    url = os.environ.get("TEST_RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
    if rabbitmq_unreachable(url):
        return None
    return {
        "BGC_QUEUE": "rabbitmq",
        "RABBITMQ_URL": url,
        "BGC_RABBITMQ_QUEUE": unique_name("bench-"),
    }


def _localstack_up() -> bool:
    try:
        return httpx.get(f"{LOCALSTACK}/_localstack/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


TRANSPORTS: dict[str, Transport] = {
    "postgres": lambda env: {"BGC_QUEUE": "postgres"},
    "sqs": lambda env: _sqs_at(env.s3_endpoint),
    "sqs-localstack": lambda env: _sqs_at(LOCALSTACK) if _localstack_up() else None,
    "rabbitmq": lambda env: _rabbitmq(),
}


class Run:
    """A web and a worker process of one transport, on a database and a bucket of their own."""

    def __init__(self, env: Servers, child_env: dict[str, str]) -> None:
        self.settings = env.fresh_settings()
        assert self.settings.database_url
        self.database_url = self.settings.database_url
        self.processes = [
            ServiceProcess(self.settings, role, BGC_WORKERS=WORKERS, **child_env)
            for role in ("web", "worker")
        ]

    async def start(self) -> str:
        ready = [await process.wait_ready() for process in self.processes]
        return str(ready[0]["addresses"][0])

    def close(self) -> None:
        for process in self.processes:
            process.close()


async def sustained(env: Servers, origin_url: str, child_env: dict[str, str], count: int) -> str:
    run = Run(env, child_env)
    try:
        base = await run.start()
        todo = iter(range(count))
        cpu = CpuMeter()
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def enqueue() -> None:
                for n in todo:
                    url = f"{origin_url}/files/s{n}.png?size=100"
                    response = await client.post(
                        "/results/enqueue", json={"jobId": "sustained", "url": url}
                    )
                    assert response.status_code == 202, response.text

            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    nursery.start_soon(enqueue)
        enqueued = time.monotonic() - started
        await wait_until_terminal(run.database_url, count, within=600)
        cpu_per_result = cpu.per_item(count)
        rows = fetch_rows(run.database_url)
    finally:
        run.close()
    assert {r["status"] for r in rows} == {"succeeded"}, {r["status"] for r in rows}
    span = max(r["ended_at"] for r in rows) - min(r["created_at"] for r in rows)
    return (
        f"{count / span.total_seconds():.0f} results/s "
        f"(enqueued at {count / enqueued:.0f}/s); CPU ms per result: {cpu_per_result}"
    )


async def pickup(env: Servers, origin_url: str, child_env: dict[str, str], count: int) -> str:
    run = Run(env, child_env)
    try:
        base = await run.start()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for n in range(count):
                url = f"{origin_url}/files/p{n}.png?size=100"
                response = await client.post(
                    "/results/enqueue", json={"jobId": "pickup", "url": url}
                )
                assert response.status_code == 202, response.text
                await trio.sleep(0.02)  # idle between results: each is picked up alone
        await wait_until_terminal(run.database_url, count, within=300)
        rows = fetch_rows(run.database_url)
    finally:
        run.close()
    return describe([(r["started_at"] - r["created_at"]).total_seconds() * 1000 for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queue")
    parser.add_argument("count", nargs="?", type=int, default=2000)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--pickup", type=int, default=200)
    args = parser.parse_args()
    names = [name.strip() for name in args.transports.split(",") if name.strip()]
    unknown = [name for name in names if name not in TRANSPORTS]
    if unknown:
        parser.error(f"unknown transports {unknown}; known: {', '.join(TRANSPORTS)}")
    rows = [
        ("web + worker processes, workers", WORKERS),
        ("sustained: results, concurrent clients", f"{args.count}, {CLIENTS}"),
        ("pickup at idle: results", str(args.pickup)),
    ]
    with servers() as env, origin_process() as origin_url:
        for name in names:
            child_env = TRANSPORTS[name](env)
            if child_env is None:
                rows.append((name, "skipped: not reachable"))
                continue
            rate = trio.run(sustained, env, origin_url, child_env, args.count)
            rows.append((f"{name}: sustained", rate))
            child_env = TRANSPORTS[name](env)  # a fresh queue: nothing left from the last run
            assert child_env is not None
            latency = trio.run(pickup, env, origin_url, child_env, args.pickup)
            rows.append((f"{name}: pickup, ms", latency))
    print(table("work queue transports", rows))


if __name__ == "__main__":
    main()
