"""The transports that carry the work (``BGC_QUEUE``), one module each.

``postgres`` needs nothing more than the database. A broker transport's module exposes
``open_broker(settings)``, an async context manager yielding a `bgchallenge.work.queue.Broker`
connected for the life of the process; adding one is a module and an entry in `BROKERS`.
`open_transport` opens the chosen one and runs its outbox relay next to it.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import trio

from bgchallenge.db.database import Database
from bgchallenge.db.repository import Attempts, Outbox, OutboxSink
from bgchallenge.queues.postgres import PostgresQueue
from bgchallenge.settings import Settings
from bgchallenge.work.brokered import BrokerQueue
from bgchallenge.work.outbox import Relay
from bgchallenge.work.queue import Broker, WorkQueue

# BGC_QUEUE value -> the module (under bgchallenge.queues) whose open_broker opens it.
BROKERS = {"sqs": "sqs", "rabbitmq": "rabbitmq"}

OpenBroker = Callable[[Settings], AbstractAsyncContextManager[Broker]]


def broker_opener(name: str) -> OpenBroker:
    """The ``open_broker`` of transport ``name`` (imported only when chosen)."""
    module = importlib.import_module(f"bgchallenge.queues.{BROKERS[name]}")
    opener: OpenBroker = module.open_broker
    return opener


@dataclass(frozen=True)
class Transport:
    """The chosen transport, opened: what the repositories and the workers need of it."""

    name: str
    settings: Settings
    broker: Broker | None = None
    relay: Relay | None = None

    @property
    def outbox(self) -> OutboxSink | None:
        """For `Results` and `Attempts`: None on ``postgres`` (no outbox is written)."""
        return None if self.relay is None else self.relay.submit

    def work_queue(self, attempts: Attempts) -> WorkQueue:
        if self.broker is None:
            return PostgresQueue(attempts, sweep_seconds=self.settings.sweep_seconds)
        return BrokerQueue(self.broker, attempts)


POSTGRES = "postgres"


@asynccontextmanager
async def open_transport(settings: Settings, database: Database) -> AsyncIterator[Transport]:
    """Open the transport ``settings.queue`` names; for a broker, run its outbox relay until
    the block ends (then send what the block's last commits left, for a bounded time)."""
    if settings.queue == POSTGRES:
        yield Transport(POSTGRES, settings)
        return
    async with broker_opener(settings.queue)(settings) as broker:
        relay = Relay(
            broker,
            Outbox(database),
            grace_seconds=settings.outbox_grace_seconds,
            sweep_seconds=settings.outbox_sweep_seconds,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(relay.serve)
            try:
                yield Transport(settings.queue, settings, broker, relay)
            finally:
                with trio.CancelScope(shield=True):
                    await relay.flush()
                nursery.cancel_scope.cancel()
