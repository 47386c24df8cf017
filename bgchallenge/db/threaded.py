"""The workers' hot path to PostgreSQL: psycopg's blocking API, one statement per call in
`trio.to_thread`, beside the trio-asyncio pool (`database.py`) that serves everything else.

Why a second bridge: through trio-asyncio every asyncio callback of a statement (the pool's
hand-out, each wait for the socket, the answer) costs one round of the Trio scheduler, and in a
busy worker process a round takes milliseconds; here a statement costs one hand-off to a thread
and one back. Measured under `bench.throughput` (bench/README.md): a claim or an outcome write
took p50 30-50 ms through trio-asyncio and about half that here, and the workers spent that
much less time idle between attempts.

Connections are opened in the calling thread when none is idle, at most ``size`` in use at
once (the limiter), and kept between calls. A connection that broke is closed, and so is every
idle one (a restarted server leaves them all dead); the caller maps the error (`Database`).
Cancellation: the statement is cancelled on the server (bounded by `CANCEL_WAIT_SECONDS`) and
the thread abandoned; it ends as soon as the server answers the cancel, and holds its limiter
token until then, so abandoned calls never exceed ``size``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
import trio
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

T = TypeVar("T")
BlockingConnection = psycopg.Connection[DictRow]


class ThreadedConnections:
    def __init__(self, url: str, size: int, *, connect_timeout: int, cancel_wait: float) -> None:
        self.url = url
        self.limiter = trio.CapacityLimiter(size)
        self.connect_timeout = connect_timeout
        self.cancel_wait = cancel_wait
        self._idle: list[BlockingConnection] = []  # append and pop are atomic: no lock
        self._closed = False

    async def run(self, work: Callable[[BlockingConnection], T]) -> T:
        """``work(connection)`` in a worker thread, on a connection in autocommit."""
        running = _Running()

        def call() -> T:
            connection = self._take()
            with running.lock:
                running.connection = connection
            try:
                return work(connection)
            finally:
                # Once this call is over, a late cancel must not reach the connection's next
                # user: the lock makes the cancel and the hand-back exclusive.
                with running.lock:
                    running.connection = None
                self._give_back(connection)

        try:
            return await trio.to_thread.run_sync(call, limiter=self.limiter, abandon_on_cancel=True)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(self.cancel_wait):
                await trio.to_thread.run_sync(
                    running.cancel, self.cancel_wait, abandon_on_cancel=True
                )
            raise

    async def aclose(self) -> None:
        """Close the idle connections; one still in use is closed when its call ends."""
        self._closed = True
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._close_idle)

    def _take(self) -> BlockingConnection:
        with contextlib.suppress(IndexError):
            return self._idle.pop()
        return psycopg.connect(
            self.url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=self.connect_timeout,
        )

    def _give_back(self, connection: BlockingConnection) -> None:
        reusable = (
            not self._closed
            and not connection.closed
            and connection.info.transaction_status == TransactionStatus.IDLE
        )
        if reusable:
            self._idle.append(connection)
            return
        broken = connection.broken
        connection.close()
        if broken:
            self._close_idle()

    def _close_idle(self) -> None:
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            connection.close()


class _Running:
    """The connection a call's statement runs on, while it runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: BlockingConnection | None = None

    def cancel(self, timeout: float) -> None:
        """Cancel the statement on the server, if the call still runs one (blocking)."""
        with self.lock:
            if self.connection is not None:
                with contextlib.suppress(psycopg.Error):
                    self.connection.cancel_safe(timeout=timeout)
