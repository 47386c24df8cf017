"""What the two boto3 edges (S3 in bgchallenge/storage/s3.py, SQS in bgchallenge/queues/sqs.py)
share: how a client is configured, and how one of its calls runs in a worker thread."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

import trio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")


def client_config(
    *, threads: int, connect_timeout: float, read_timeout: float, **extra: Any
) -> Config:
    """A client for ``threads`` concurrent calls, with our timeouts and one retry of its own."""
    return Config(
        max_pool_connections=threads + 2,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        **extra,
    )


async def call_in_thread(
    function: Callable[..., T],
    kwargs: dict[str, Any],
    *,
    limiter: trio.CapacityLimiter,
    abandon_on_cancel: bool,
    map_error: Callable[[ClientError | BotoCoreError], Exception],
) -> T:
    """Run ``function(**kwargs)`` in a thread under ``limiter`` (with the caller's context
    variables: the log fields), raising botocore's errors as ``map_error`` makes them."""
    context = contextvars.copy_context()

    def run() -> T:
        try:
            return context.run(function, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc) from exc

    return await trio.to_thread.run_sync(run, limiter=limiter, abandon_on_cancel=abandon_on_cancel)
