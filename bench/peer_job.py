"""The job `bench.peers` gives every peer, written the way a user would on asyncio: a HEAD, a
streaming GET hashed with sha256, a PutObject through boto3 in a thread (a pool of 16), and one
row update in PostgreSQL. The download is tried again at once on a transport error (the
origin closes idle kept-alive connections; the service retries those too).

Each peer runs as ``python -m bench.peer_NAME DATABASE_URL S3_ENDPOINT BUCKET``: it sets up
what it needs, prints ``ready``, and at a line ``go`` on its standard input takes every row of
the ``items`` table (its queue's enqueue, or the plain script's loop) and copies each into the
bucket under the row's id, setting the row's size, sha256 and ``done_at``. It runs until killed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONCURRENCY = 16
ATTEMPTS = 3  # of the download, on a transport error

ITEMS_TABLE = (
    "CREATE TABLE items (id bigint PRIMARY KEY, url text NOT NULL,"
    " size bigint, sha256 text, done_at timestamptz)"
)


@dataclass
class Peer:
    database_url: str
    s3_endpoint: str
    bucket: str


@dataclass
class Copier:
    client: httpx.AsyncClient
    s3: S3Client
    bucket: str
    pool: AsyncConnectionPool

    async def copy(self, item_id: int, url: str) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                content_type, body, sha256 = await self.download(url)
                break
            except httpx.TransportError:
                # e.g. the origin closing a kept-alive connection as it is reused
                if attempt == ATTEMPTS:
                    raise
        put = functools.partial(
            self.s3.put_object,
            Bucket=self.bucket,
            Key=str(item_id),
            Body=body,
            ContentType=content_type,
        )
        await asyncio.to_thread(put)
        async with self.pool.connection() as connection:
            await connection.execute(
                "UPDATE items SET size = %s, sha256 = %s, done_at = clock_timestamp()"
                " WHERE id = %s",
                (len(body), sha256, item_id),
            )

    async def download(self, url: str) -> tuple[str, bytes, str]:
        """The content type, body and sha256 of ``url``'s image."""
        head = await self.client.head(url)
        head.raise_for_status()
        content_type = head.headers.get("content-type", "")
        if not content_type.startswith("image/"):
            raise ValueError(f"{url}: {content_type!r} is not an image")
        digest = hashlib.sha256()
        body = bytearray()
        async with self.client.stream("GET", url) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                body += chunk
        return content_type, bytes(body), digest.hexdigest()

    async def items(self) -> list[tuple[int, str]]:
        async with self.pool.connection() as connection:
            cursor = await connection.execute("SELECT id, url FROM items ORDER BY id")
            return [(int(row[0]), str(row[1])) for row in await cursor.fetchall()]


@asynccontextmanager
async def open_copier(peer: Peer) -> AsyncIterator[Copier]:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(CONCURRENCY))
    s3 = boto3.client(
        "s3", endpoint_url=peer.s3_endpoint, config=Config(max_pool_connections=CONCURRENCY)
    )
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with (
        httpx.AsyncClient(limits=limits) as client,
        AsyncConnectionPool(peer.database_url, max_size=CONCURRENCY, open=False) as pool,
    ):
        yield Copier(client, s3, peer.bucket, pool)


async def ready_then_go() -> None:
    """Say ``ready``, then wait for ``go``."""
    print("ready", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit(f"expected 'go', got {line!r}")


async def forever() -> None:
    await asyncio.Event().wait()


def main(run: Callable[[Peer], Coroutine[Any, Any, None]]) -> None:
    if len(sys.argv) != 4:
        raise SystemExit(f"usage: python -m {sys.argv[0]} DATABASE_URL S3_ENDPOINT BUCKET")
    asyncio.run(run(Peer(*sys.argv[1:4])))
