"""A psycopg connection pool driven from Trio through trio-asyncio.

Every public coroutine here is a plain Trio coroutine. Cancellation: a cancelled Trio scope
cancels the asyncio task running the query, and psycopg then cancels the query on the server,
so nothing is left running. Errors from psycopg surface as `DatabaseUnavailable` when the
server cannot be reached or the connection is lost, and as psycopg's own errors otherwise. A
transaction that lost a deadlock or a serialization conflict was rolled back whole: it is run
again, a few times, before its error surfaces.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
import trio_asyncio
from psycopg import AsyncConnection, OperationalError
from psycopg.errors import DeadlockDetected, SerializationFailure
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bgchallenge.db.queries import load_queries

T = TypeVar("T")
Row = dict[str, Any]
Connection = AsyncConnection[DictRow]


POOL_CHECK_SECONDS = 2.0
CONNECTION_WAIT_SECONDS = 3.0
# Deadlocks (40P01) and serialization failures (40001): attempts in all, and the first backoff
# (doubled each time, jittered so that the two sides of a deadlock do not collide again).
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF_SECONDS = 0.005
# Besides class 08: the server is shutting down, crashed, or still starting.
_CONNECTION_SQLSTATES = ("57P01", "57P02", "57P03")


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or dropped the connection."""


def is_connection_failure(exc: BaseException) -> bool:
    """A failure of the connection itself, not of the statement: no server, a lost or closed
    connection (psycopg's own errors carry no SQLSTATE), a server going away, no free
    connection in time."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = exc.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _CONNECTION_SQLSTATES


class Database:
    """Named queries over a pool; only this class runs asyncio code."""

    def __init__(self, pool: AsyncConnectionPool[Connection], loop: Any, url: str) -> None:
        self._pool = pool
        self._loop = loop
        self._queries = load_queries()
        self.url = url

    async def run_aio(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run an asyncio coroutine on this database's loop, mapping connection failures."""
        try:
            result: T = await self._loop.run_aio_coroutine(coro)
        except (OperationalError, PoolTimeout) as exc:
            if not is_connection_failure(exc):
                raise
            # Connections idle in the pool may be just as dead (a restarted server): test them
            # now, so that the next callers get live ones instead of failing one by one.
            with trio.move_on_after(POOL_CHECK_SECONDS), contextlib.suppress(Exception):
                await self._loop.run_aio_coroutine(self._pool.check())
            raise DatabaseUnavailable(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
        return result

    async def with_connection(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``work(connection)`` (an asyncio coroutine function) on a pooled connection.

        ``work`` is run again if it lost a deadlock or a serialization conflict: it must be one
        statement in autocommit or one transaction (`in_transaction`), which PostgreSQL rolled
        back whole."""

        async def run() -> T:
            async with self._pool.connection() as connection:
                return await work(connection)

        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await self.run_aio(run())
            except (DeadlockDetected, SerializationFailure):
                if attempt == CONFLICT_ATTEMPTS:
                    raise
            await trio.sleep(
                random.uniform(0.5, 1.5) * CONFLICT_BACKOFF_SECONDS * 2 ** (attempt - 1)
            )
        raise AssertionError("unreachable")

    async def fetch_all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        sql = self._queries[name]

        async def work(connection: Connection) -> list[Row]:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

        return await self.with_connection(work)

    async def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = await self.fetch_all(name, params)
        return rows[0] if rows else None

    async def in_transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run ``work(transaction)`` inside one transaction; it may only call the transaction's
        query methods (it runs on the asyncio side)."""

        async def run(connection: Connection) -> T:
            async with connection.transaction():
                return await work(Transaction(connection, self._queries))

        return await self.with_connection(run)


class Transaction:
    """Named queries on one connection inside a transaction (asyncio side)."""

    def __init__(self, connection: Connection, queries: dict[str, str]) -> None:
        self._connection = connection
        self._queries = queries

    async def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        cursor = await self._connection.execute(self._queries[name], params)
        return await cursor.fetchone() if cursor.description else None


async def _configure(connection: Connection) -> None:
    await connection.set_autocommit(True)


@asynccontextmanager
async def open_database(url: str, *, max_size: int = 10) -> AsyncIterator[Database]:
    """Open a pool to ``url`` on a fresh trio-asyncio loop; close both on exit.

    Raises `DatabaseUnavailable` if no connection can be made within 10 s.
    """
    async with trio_asyncio.open_loop() as loop:
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row},
            configure=_configure,
            connection_class=AsyncConnection[DictRow],
            # How long a query waits for a connection: past it, an outage answers 503 promptly
            # instead of holding requests.
            timeout=CONNECTION_WAIT_SECONDS,
        )
        database = Database(pool, loop, url)
        try:
            await database.run_aio(pool.open(wait=True, timeout=10.0))
        except BaseException:
            with trio.CancelScope(shield=True):
                await loop.run_aio_coroutine(pool.close())
            raise
        try:
            yield database
        finally:
            with trio.CancelScope(shield=True):
                await loop.run_aio_coroutine(pool.close(timeout=5.0))
