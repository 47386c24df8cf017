"""The ``rabbitmq`` transport: a RabbitMQ durable quorum queue (``RABBITMQ_URL``,
``BGC_RABBITMQ_QUEUE``).

Not built yet: ``open_broker`` says so (exit status 1, one line) instead of starting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bgchallenge.settings import Settings
from bgchallenge.work.queue import Broker, QueueUnavailable


@asynccontextmanager
async def open_broker(settings: Settings) -> AsyncIterator[Broker]:
    raise QueueUnavailable(
        f"the rabbitmq transport is not available in this build ({settings.rabbitmq_queue})"
    )
    yield  # pragma: no cover  (makes this a generator)
