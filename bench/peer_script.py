"""`bench.peer_job`'s job without a queue: a plain script that takes the items and works
through them with 16 tasks.

python -m bench.peer_script DATABASE_URL S3_ENDPOINT BUCKET
"""

from __future__ import annotations

import asyncio

from bench.peer_job import CONCURRENCY, Copier, Peer, forever, main, open_copier, ready_then_go


async def run(peer: Peer) -> None:
    async with open_copier(peer) as copier:
        await ready_then_go()
        todo = iter(await copier.items())

        async def worker(copier: Copier) -> None:
            for item_id, url in todo:
                await copier.copy(item_id, url)

        await asyncio.gather(*(worker(copier) for _ in range(CONCURRENCY)))
        await forever()  # until killed, so that its CPU time is read while it still runs


if __name__ == "__main__":
    main(run)
