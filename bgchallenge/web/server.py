"""Serving the app with hypercorn's trio worker."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

GRACEFUL_HTTP_SECONDS = 5.0


async def serve_http(
    app: QuartTrio,
    host: str,
    port: int,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set; report the bound addresses once the socket listens.

    On shutdown, stops accepting and gives requests in flight a few seconds to finish.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_HTTP_SECONDS
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
