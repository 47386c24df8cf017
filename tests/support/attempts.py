"""A worker process's parts in the test process, to run single attempts by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bgchallenge.db.database import open_database
from bgchallenge.metrics import Metrics
from bgchallenge.service import create_storage, work_context
from bgchallenge.settings import Settings
from bgchallenge.work.workers import WorkContext


@asynccontextmanager
async def worker_context(settings: Settings) -> AsyncIterator[WorkContext]:
    """No listener, no dispatcher, no reaper: the test claims and runs attempts itself, and a
    cancel's NOTIFY reaches nobody (as when it arrives just as the attempt ends), so only the
    recorded flag can stop a result."""
    async with open_database(settings.database_url or "", max_size=4) as database:
        ctx = work_context(settings, database, create_storage(settings), Metrics())
        try:
            yield ctx
        finally:
            await ctx.fetcher.aclose()
