"""LISTEN on a dedicated connection, reconnecting with backoff for as long as it runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import aclosing

import trio
from psycopg import AsyncConnection

from bgchallenge.db.database import CONNECT_TIMEOUT_SECONDS, Database, DatabaseUnavailable

log = logging.getLogger(__name__)

RESULTS_CHANNEL = "bgc_results"
CANCELS_CHANNEL = "bgc_cancels"
# notifies() returns after this long without a notification, so a silently dead connection is
# found by a probe query instead of waiting forever.
PROBE_SECONDS = 15.0
RECONNECT_MAX_SECONDS = 5.0
CLOSE_SECONDS = 2.0


async def _connect_and_listen(url: str, channels: Sequence[str]) -> AsyncConnection[object]:
    connection = await AsyncConnection.connect(
        url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        # what the connection is for, in pg_stat_activity
        application_name="bgchallenge: listen " + " ".join(channels),
    )
    for channel in channels:
        await connection.execute(f"LISTEN {channel}")  # channels are our constants
    return connection


async def _pump(connection: AsyncConnection[object], on_notify: Callable[[str, str], None]) -> None:
    while True:
        async with aclosing(connection.notifies(timeout=PROBE_SECONDS)) as notifications:
            async for notification in notifications:
                on_notify(notification.channel, notification.payload)
        await connection.execute("SELECT 1")


async def serve_listener(
    database: Database,
    channels: Sequence[str],
    on_connect: Callable[[], None],
    on_notify: Callable[[str, str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen until cancelled; ``on_connect`` runs after every (re)connection, so the caller can
    look for what was missed while disconnected.

    Reports started once the first LISTEN is in place. Connection failures are logged and
    retried with backoff (up to 5 s), never raised. Cancellation closes the connection.
    """
    delay = 0.1
    started = False
    while True:
        try:
            connection = await database.run_aio(_connect_and_listen(database.url, channels))
            try:
                on_connect()
                if not started:
                    task_status.started()
                    started = True
                else:
                    log.info("listener reconnected")
                delay = 0.1
                await database.run_aio(_pump(connection, on_notify))
            finally:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_SECONDS):
                    await database.run_aio(connection.close())
        except DatabaseUnavailable as exc:
            log.warning("listener disconnected; reconnecting", extra={"error": str(exc)})
        await trio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)
