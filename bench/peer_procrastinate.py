"""`bench.peer_job`'s job on Procrastinate, as its documentation sets one up: an `App` over a
`PsycopgConnector`, one async task, a worker with ``concurrency=16``, the jobs deferred in one
batch.

python -m bench.peer_procrastinate DATABASE_URL S3_ENDPOINT BUCKET
"""

from __future__ import annotations

import asyncio

import procrastinate
from procrastinate.types import JSONDict

from bench.peer_job import CONCURRENCY, Peer, main, open_copier, ready_then_go


async def run(peer: Peer) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=peer.database_url))
    async with open_copier(peer) as copier, app.open_async():
        await app.schema_manager.apply_schema_async()

        @app.task(name="copy")
        async def copy(item_id: int, url: str) -> None:
            await copier.copy(item_id, url)

        async def enqueue() -> None:
            await ready_then_go()
            todo = await copier.items()
            jobs: list[JSONDict] = [{"item_id": i, "url": u} for i, u in todo]
            await copy.batch_defer_async(*jobs)

        await asyncio.gather(app.run_worker_async(concurrency=CONCURRENCY), enqueue())


if __name__ == "__main__":
    main(run)
