"""`bench.peer_job`'s job on PgQueuer, as its documentation sets one up: a `PgQueuer` over an
`AsyncpgDriver`, one entrypoint with ``concurrency_limit=16``, the jobs enqueued in one batch
through `Queries`.

Not its `PsycopgDriver`: that driver waits for notifications on the same connection as its
queries (``notifies(timeout=1.0)``, holding the connection), so a dequeue waits up to a second
whenever a notification is awaited; with it this job ran at ~7 results/s, in bursts a second
apart.

python -m bench.peer_pgqueuer DATABASE_URL S3_ENDPOINT BUCKET
"""

from __future__ import annotations

import asyncio

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries

from bench.peer_job import CONCURRENCY, Peer, main, open_copier, ready_then_go


async def run(peer: Peer) -> None:
    connection = await asyncpg.connect(peer.database_url)
    producer = await asyncpg.connect(peer.database_url)
    try:
        async with open_copier(peer) as copier:
            driver = AsyncpgDriver(connection)
            await Queries(driver).install()
            pgq = PgQueuer(driver)

            @pgq.entrypoint("copy", concurrency_limit=CONCURRENCY)
            async def copy(job: Job) -> None:
                assert job.payload is not None
                item_id, url = job.payload.decode().split(" ", 1)
                await copier.copy(int(item_id), url)

            async def enqueue() -> None:
                await ready_then_go()
                todo = await copier.items()
                payloads: list[bytes | None] = [f"{i} {url}".encode() for i, url in todo]
                await Queries(AsyncpgDriver(producer)).enqueue(
                    ["copy"] * len(todo), payloads, [0] * len(todo)
                )

            await asyncio.gather(pgq.run(), enqueue())
    finally:
        await producer.close()
        await connection.close()


if __name__ == "__main__":
    main(run)
