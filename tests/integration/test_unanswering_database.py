"""A PostgreSQL that stops answering mid-query must not hold a cancelled caller (a shutdown, a
deadline) for psycopg's own 5 s + 5 s of cancellation."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio

from bgchallenge.db.database import CANCEL_WAIT_SECONDS, Connection, open_database
from tests.conftest import IO_GUARD_SECONDS
from tests.support.proxy import FreezableProxy


async def select_one(connection: Connection) -> None:
    await connection.execute("SELECT 1")


async def test_a_cancelled_query_gives_way_within_its_bound(
    nursery: trio.Nursery, database_url: str
) -> None:
    parts = urlsplit(database_url)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await nursery.start(proxy.serve)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(proxy.url_for(database_url), max_size=1) as database:
            await database.with_connection(select_one)
            proxy.freeze()
            with trio.move_on_after(0.2) as deadline:
                await database.with_connection(select_one)
            cancelled_at = deadline.deadline
            given_way_after = trio.current_time() - cancelled_at
    assert deadline.cancelled_caught
    assert given_way_after <= 2 * CANCEL_WAIT_SECONDS + 1.0, given_way_after
