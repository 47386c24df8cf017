"""The unauthenticated probes under load: a flood of /health or /metrics costs the backends
about one check per cache window, and never an upload thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from bgchallenge.db.batching import Batcher
from bgchallenge.db.database import open_database
from bgchallenge.db.repository import Results
from bgchallenge.metrics import Metrics
from bgchallenge.service import create_storage
from bgchallenge.settings import Settings
from bgchallenge.storage.s3 import Storage
from bgchallenge.web.app import (
    HEALTH_MAX_AGE_SECONDS,
    QUEUE_DEPTH_MAX_AGE_SECONDS,
    WebDependencies,
    create_app,
)
from bgchallenge.web.server import serve_http
from tests.conftest import IO_GUARD_SECONDS, RunningService
from tests.support.metrics import samples

FLOOD = 200


class CountingResults(Results):
    """The real repository; counts the queue-depth queries it runs."""

    depth_queries = 0

    async def queue_depth(self) -> dict[str, int]:
        self.depth_queries += 1
        return await super().queue_depth()


@asynccontextmanager
async def operations_routes(
    settings: Settings, storage: Storage
) -> AsyncIterator[tuple[httpx.AsyncClient, CountingResults]]:
    """A worker process's HTTP side (/health, /metrics) over the real database and bucket,
    built here so that the test holds its storage and repository."""
    async with (
        open_database(settings.require_database(), max_size=4) as database,
        trio.open_nursery() as nursery,
    ):
        results = CountingResults(database)
        deps = WebDependencies(
            results,
            storage,
            None,
            await results.cursor_key(),
            Metrics(),
            enqueue=Batcher(results.enqueue_many),
            unchanged_since=Batcher(results.unchanged_since),
            serve_api=False,
        )
        shutdown = trio.Event()
        binds = await nursery.start(serve_http, create_app(deps), "127.0.0.1", 0, shutdown)
        async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
            yield client, results
        shutdown.set()


async def test_a_flood_of_health_requests_runs_about_one_check_per_second(
    service: RunningService,
) -> None:
    answers: list[int] = []

    async def probe() -> None:
        answers.append((await service.client.get("/health")).status_code)

    with trio.fail_after(IO_GUARD_SECONDS):
        started = trio.current_time()
        async with trio.open_nursery() as clients:
            for _ in range(FLOOD):
                clients.start_soon(probe)
        elapsed = trio.current_time() - started
        # every S3 call the service makes is timed in this histogram, HeadBucket included
        after = samples((await service.client.get("/metrics")).text)
    head_buckets = after.get(("bgc_upload_seconds_count", (("operation", "head_bucket"),)), 0)
    assert 1 <= head_buckets <= 1 + elapsed / HEALTH_MAX_AGE_SECONDS, (head_buckets, elapsed)
    assert answers == [200] * FLOOD


async def test_health_answers_while_every_upload_thread_is_taken(settings: Settings) -> None:
    storage = create_storage(settings)
    holders = [object() for _ in range(int(storage.limiter.total_tokens))]
    for holder in holders:  # as if every upload thread were busy with a slow part
        storage.limiter.acquire_on_behalf_of_nowait(holder)
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            async with operations_routes(settings, storage) as (client, _):
                response = await client.get("/health")
    finally:
        for holder in holders:
            storage.limiter.release_on_behalf_of(holder)
    assert response.status_code == 200, response.text
    assert response.json()["storage"] == "ok"


async def test_scrapes_within_the_window_share_one_queue_depth_query(
    settings: Settings,
) -> None:
    texts: list[str] = []

    async def scrape() -> None:
        texts.append((await client.get("/metrics")).text)

    with trio.fail_after(IO_GUARD_SECONDS):
        async with operations_routes(settings, create_storage(settings)) as (client, results):
            started = trio.current_time()
            async with trio.open_nursery() as scrapers:
                for _ in range(FLOOD // 4):
                    scrapers.start_soon(scrape)
            for _ in range(5):
                await scrape()
            elapsed = trio.current_time() - started
    assert len(texts) == FLOOD // 4 + 5
    assert all(
        samples(text)[("bgc_queue", (("state", "queued"),))] == 0 for text in texts
    )  # a real reading, not the NaN of an unanswered query
    windows = 1 + int(elapsed / QUEUE_DEPTH_MAX_AGE_SECONDS)
    assert 1 <= results.depth_queries <= windows, (results.depth_queries, elapsed)
