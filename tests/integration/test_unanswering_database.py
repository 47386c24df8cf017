"""A PostgreSQL that stops answering or refuses connections must not hold a shutdown: a cancelled
query does not wait for psycopg's own 5 s + 5 s of cancellation, and a start-up that cannot
complete is cancelled."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from bgchallenge.db.database import (
    CANCEL_WAIT_SECONDS,
    Connection,
    DatabaseUnavailable,
    open_database,
)
from bgchallenge.db.listener import serve_listener
from bgchallenge.service import Role, run_service
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS
from tests.support.proxy import PostgresProxy
from tests.support.results import eventually


async def select_one(connection: Connection) -> None:
    await connection.execute("SELECT 1")


async def test_a_cancelled_query_gives_way_within_its_bound(
    nursery: trio.Nursery, database_url: str
) -> None:
    proxy = PostgresProxy(database_url)
    await nursery.start(proxy.serve)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(proxy.url, max_size=1) as database:
            await database.with_connection(select_one)
            proxy.freeze()
            with trio.move_on_after(0.2) as deadline:
                await database.with_connection(select_one)
            cancelled_at = deadline.deadline
            given_way_after = trio.current_time() - cancelled_at
    assert deadline.cancelled_caught
    assert given_way_after <= 2 * CANCEL_WAIT_SECONDS + 1.0, given_way_after


async def test_a_shutdown_cancels_a_start_up_whose_listener_cannot_connect(
    nursery: trio.Nursery, database_url: str, settings: Settings
) -> None:
    """The pool's one connection gets through and migrates; the listener's own connection is
    refused, and it retries for as long as it runs."""
    proxy = PostgresProxy(database_url)
    proxy.max_connections = 1
    await nursery.start(proxy.serve)
    own = dataclasses.replace(settings, database_url=proxy.url)
    shutdown = trio.Event()
    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as service:
            service.start_soon(run_service, own, Role.WORKER, shutdown)
            await eventually(lambda: proxy.accepted >= 3)  # the listener was refused twice
            shutdown.set()
            stopping = trio.current_time()
        stopped_after = trio.current_time() - stopping
    assert stopped_after < 5.0, stopped_after


async def test_the_listener_gives_up_a_connect_that_is_never_answered(
    nursery: trio.Nursery, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = PostgresProxy(database_url)
    await nursery.start(proxy.serve)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(proxy.url, max_size=1) as database:
            proxy.hold_new = True
            async with trio.open_nursery() as listening:
                listening.start_soon(
                    serve_listener, database, ("bgc_results",), lambda: None, lambda c, p: None
                )
                # a connect timeout, not a hang: the listener logs the failure and retries
                await eventually(
                    lambda: any("reconnecting" in r.getMessage() for r in caplog.records)
                )
                listening.cancel_scope.cancel()


async def test_the_pool_gives_up_a_connect_that_is_never_answered(
    nursery: trio.Nursery, database_url: str
) -> None:
    """The pool replaces a dropped connection; if that connect hung, the pool (one connection
    here) would stay empty for good, even once the server answers again."""
    proxy = PostgresProxy(database_url)
    await nursery.start(proxy.serve)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(proxy.url, max_size=1) as database:
            await database.with_connection(select_one)
            proxy.hold_new = True
            proxy.drop_open()
            with pytest.raises(DatabaseUnavailable):
                await database.with_connection(select_one)
            held = proxy.accepted
            await eventually(lambda: proxy.accepted > held)  # the pool is reconnecting
            proxy.hold_new = False
            while True:
                try:
                    await database.with_connection(select_one)
                    break
                except DatabaseUnavailable:
                    await trio.sleep(0.2)  # as a client would retry
