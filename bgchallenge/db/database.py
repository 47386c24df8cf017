"""PostgreSQL from Trio: a psycopg connection pool driven through trio-asyncio, and beside it,
for the workers' own single statements (claims, lease renewals, outcomes), psycopg's blocking
API in worker threads.

Every public coroutine here is a plain Trio coroutine. Cancellation: a cancelled Trio scope
cancels the asyncio task running the query, and psycopg then cancels the query on the server,
so nothing is left running; a statement in a thread is cancelled on the server the same way,
and a cancelled caller waits (bounded) for its thread to be done with the connection. Errors
from psycopg surface as `DatabaseUnavailable` when the server cannot be reached or the
connection is lost, and as psycopg's own errors otherwise. A statement that lost a deadlock or
a serialization conflict was rolled back whole: it is run again, a few times, before its error
surfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import outcome
import psycopg
import trio
import trio_asyncio
from psycopg import AsyncConnection, OperationalError
from psycopg.errors import DeadlockDetected, SerializationFailure
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bgchallenge.db.queries import load_queries

log = logging.getLogger(__name__)
T = TypeVar("T")
Row = dict[str, Any]
Connection = AsyncConnection[DictRow]


POOL_CHECK_SECONDS = 2.0
CONNECTION_WAIT_SECONDS = 3.0
# A server that accepts the TCP connection and never answers must not hold a connect forever.
CONNECT_TIMEOUT_SECONDS = 5
# How long a cancelled caller waits for psycopg to wind a query down. psycopg cancels it on the
# server and waits for the answer: milliseconds from a live server, but up to 5 s + 5 s from
# one that stopped answering. Past this, a second interruption closes the connection at once
# (psycopg >= 3.3.9, the version pyproject.toml requires).
CANCEL_WAIT_SECONDS = 1.0
POOL_CLOSE_SECONDS = 2.0
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


def _unavailable(exc: Exception) -> DatabaseUnavailable:
    return DatabaseUnavailable(str(exc).splitlines()[0] if str(exc) else repr(exc))


class BlockingConnections:
    """Connections for psycopg's blocking API, each used by one worker thread at a time.

    At most ``size`` threads run statements at once (``threads``), so at most ``size``
    connections exist; an idle one is reused, a broken one dropped, a missing one made in the
    thread that needs it (a process that runs no worker never makes one).
    """

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.threads = trio.CapacityLimiter(size)
        # for to_thread, which must not add a bound of its own (its default limiter is shared
        # by the whole process): `threads` is taken before a statement's thread starts
        self.unbounded = trio.CapacityLimiter(math.inf)
        self._idle: list[psycopg.Connection[DictRow]] = []
        self._closed = False
        self._lock = threading.Lock()  # the threads share the idle list

    def take(self) -> psycopg.Connection[DictRow]:
        """In a worker thread: an idle connection, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return psycopg.connect(
            self.url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )

    def give_back(self, connection: psycopg.Connection[DictRow]) -> None:
        """In a worker thread: keep a healthy connection for the next statement."""
        with self._lock:
            if not (self._closed or connection.closed or connection.broken):
                self._idle.append(connection)
                return
        connection.close()

    def close_idle(self) -> None:
        """In a worker thread: close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def close(self) -> None:
        """In a worker thread: close every idle connection and any given back later."""
        self._closed = True
        self.close_idle()


class _ThreadedStatement:
    """One statement run in a worker thread. When its caller is cancelled, `stop` cancels it on
    the server and waits (bounded) for the thread to finish with it; ``answer`` then holds what
    the statement answered, if it finished (a claim that committed must be handed back)."""

    def __init__(self, connections: BlockingConnections, sql: str, params: Any) -> None:
        self.connections = connections
        self.sql = sql
        self.params = params
        self.connection: psycopg.Connection[DictRow] | None = None
        self.answer: outcome.Outcome[list[Row]] | None = None
        self.finished = trio.Event()
        self._token = trio.lowlevel.current_trio_token()

    def run(self) -> list[Row]:
        try:
            self.answer = outcome.capture(self._execute)
            return self.answer.unwrap()
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self.finished.set)

    def _execute(self) -> list[Row]:
        self.connection = connection = self.connections.take()
        try:
            cursor = connection.execute(self.sql, self.params)
            return cursor.fetchall() if cursor.description else []
        finally:
            self.connections.give_back(connection)

    async def stop(self) -> None:
        connection = self.connection
        if connection is not None and not self.finished.is_set():
            with trio.move_on_after(CANCEL_WAIT_SECONDS * 2):
                await trio.to_thread.run_sync(
                    lambda: connection.cancel_safe(timeout=CANCEL_WAIT_SECONDS)
                )
        with trio.move_on_after(CANCEL_WAIT_SECONDS):
            await self.finished.wait()
        if not self.finished.is_set():
            log.warning("a database call did not stop when cancelled; left behind")


class Database:
    """Named queries over a pool; only this class runs asyncio code."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        loop: Any,
        url: str,
        blocking: BlockingConnections,
    ) -> None:
        self._pool = pool
        self._loop = loop
        self._queries = load_queries()
        self.url = url
        self._blocking = blocking

    async def run_aio(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run an asyncio coroutine on this database's loop, mapping connection failures."""
        try:
            result: T = await run_bounded(self._loop, coro)
        except (OperationalError, PoolTimeout) as exc:
            if not is_connection_failure(exc):
                raise
            # Connections idle in the pool may be just as dead (a restarted server): test them
            # now, so that the next callers get live ones instead of failing one by one.
            with trio.move_on_after(POOL_CHECK_SECONDS), contextlib.suppress(Exception):
                await self._loop.run_aio_coroutine(self._pool.check())
            raise _unavailable(exc) from exc
        return result

    async def fetch_all_in_thread(
        self, name: str, params: dict[str, Any] | None = None
    ) -> list[Row]:
        """`fetch_all` through psycopg's blocking API in a worker thread, for a worker's own
        statements (claims, lease renewals, outcomes): under load it answers in about half the
        time of the asyncio bridge, which takes a Trio scheduling round per asyncio callback
        (docs/benchmarks.md, "The worker's cost per result, second round"). Cancelling the
        caller cancels the statement on the server."""
        sql = self._queries[name]

        async def run() -> list[Row]:
            statement = _ThreadedStatement(self._blocking, sql, params)
            # The slot is taken here, not by to_thread: a caller cancelled while it waits for
            # one has started no thread, so there is nothing to stop.
            async with self._blocking.threads:
                try:
                    return await trio.to_thread.run_sync(
                        statement.run, abandon_on_cancel=True, limiter=self._blocking.unbounded
                    )
                except trio.Cancelled:
                    with trio.CancelScope(shield=True):
                        await statement.stop()
                    if isinstance(statement.answer, outcome.Value):
                        rows: list[Row] = statement.answer.value  # it finished before it stopped
                        return rows
                    raise
                except OperationalError as exc:
                    if not is_connection_failure(exc):
                        raise
                    # The idle ones may be just as dead (a restarted server).
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self._blocking.close_idle)
                    raise _unavailable(exc) from exc

        return await _retrying_conflicts(run)

    async def with_connection(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``work(connection)`` (an asyncio coroutine function) on a pooled connection.

        ``work`` is run again if it lost a deadlock or a serialization conflict: it must be one
        statement in autocommit, which PostgreSQL rolled back whole."""

        async def run() -> T:
            async with self._pool.connection() as connection:
                return await work(connection)

        return await _retrying_conflicts(lambda: self.run_aio(run()))

    async def fetch_all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        sql = self._queries[name]

        async def work(connection: Connection) -> list[Row]:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

        return await self.with_connection(work)

    async def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = await self.fetch_all(name, params)
        return rows[0] if rows else None


async def _retrying_conflicts(run: Callable[[], Awaitable[T]]) -> T:
    """``run()``, again if it lost a deadlock or a serialization conflict (jittered backoff)."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return await run()
        except (DeadlockDetected, SerializationFailure):
            if attempt == CONFLICT_ATTEMPTS:
                raise
        await trio.sleep(random.uniform(0.5, 1.5) * CONFLICT_BACKOFF_SECONDS * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


async def run_bounded(loop: Any, coro: Coroutine[Any, Any, T]) -> T:
    """``loop.run_aio_coroutine(coro)``, except that a cancelled caller is held for at most
    2 x `CANCEL_WAIT_SECONDS` by psycopg's own cancellation (trio-asyncio waits for it without
    limit): shutdown paths and deadlines stay bounded when the server stops answering."""
    try:
        future = asyncio.ensure_future(coro, loop=loop)
    except BaseException:
        coro.close()  # a closed loop: no "never awaited" warning on top
        raise
    done = trio.Event()
    future.add_done_callback(lambda _: done.set())
    try:
        await done.wait()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            for _ in range(2):  # the second interruption makes psycopg close the connection
                future.cancel()
                with trio.move_on_after(CANCEL_WAIT_SECONDS):
                    await done.wait()
                if future.done():
                    break
        if not future.done():
            log.warning("a database call did not stop when cancelled; left behind")
        if not future.done() or future.cancelled():
            raise
    return future.result()


async def _close_pool(loop: Any, pool: AsyncConnectionPool[Connection]) -> None:
    """Close the pool, whatever cancellation is under way, in bounded time: the pool waits
    `POOL_CLOSE_SECONDS` for its workers (one may be connecting), then closes anyway."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + POOL_CLOSE_SECONDS + 1):
        await run_bounded(loop, pool.close(timeout=POOL_CLOSE_SECONDS))


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
            kwargs={"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            configure=_configure,
            connection_class=AsyncConnection[DictRow],
            # How long a query waits for a connection: past it, an outage answers 503 promptly
            # instead of holding requests.
            timeout=CONNECTION_WAIT_SECONDS,
        )
        blocking = BlockingConnections(url, max_size)
        database = Database(pool, loop, url, blocking)
        try:
            await database.run_aio(pool.open(wait=True, timeout=10.0))
        except BaseException:
            await _close_pool(loop, pool)
            raise
        try:
            yield database
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(blocking.close)
            await _close_pool(loop, pool)
