"""The relay: sends the outbox's message intents to the broker, then deletes what was sent.

A statement that makes a result due on a broker transport (the enqueue, a retry, a hand-back,
the reaper) writes the message intent in its own commit and tells the relay of it right after
(`submit`, the repositories' `OutboxSink`): the relay sends it at once, in batches, and deletes
the rows the broker accepted. An intent the relay never sent (the process died after the
commit, the broker was down, the intent is due later than the broker can delay) stays in the
table: the sweep, in every process, sends what has waited longer than a grace period. So a
committed result is never without its message; a message sent twice (a relay and a sweep
racing) is harmless, as delivery is at least once anyway.

A retry is the same: its intent is written by the ``schedule_retry`` statement with the new
``due_at`` as ``not_before``, and sent at once with the broker holding it back until then
(SQS DelaySeconds, a RabbitMQ delay queue) — an outbox row rather than send-then-commit, so
that a message never exists for a retry that did not commit, and one always exists for a retry
that did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.db.repository import Outbox
from bgchallenge.domain.messages import Message
from bgchallenge.work.queue import Broker, QueueUnavailable

log = logging.getLogger(__name__)

# Intents held in memory for the relay; past this the sweep sends the rest (they are committed).
MAX_PENDING = 10_000
SEND_CONCURRENCY = 8
SWEEP_BATCH = 100
# How long a swept intent stays out of other sweeps' way while this one sends it.
SWEEP_LEASE_SECONDS = 30.0
# How long the relay may hold up its nursery's exit to send what a shutdown just committed
# (the hand-backs); past it, the sweep of another (or the next) process sends them.
FLUSH_SECONDS = 2.0


class Relay:
    def __init__(
        self,
        broker: Broker,
        outbox: Outbox,
        *,
        grace_seconds: float,
        sweep_seconds: float,
    ) -> None:
        self.broker = broker
        self.outbox = outbox
        self.grace_seconds = grace_seconds
        self.sweep_seconds = sweep_seconds
        self._pending: list[Message] = []
        self._wakeup = trio.Event()
        self._idle = trio.Event()
        self._idle.set()

    def submit(self, messages: Sequence[Message]) -> None:
        """Send these intents, just committed, as soon as possible (never blocks)."""
        room = MAX_PENDING - len(self._pending)
        self._pending.extend(messages[:room])
        if messages:
            self._idle = trio.Event()
            self._wakeup.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay and sweep until cancelled. Outages are logged and waited out, never raised."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._relay)
            nursery.start_soon(self._sweep)
            task_status.started()

    async def flush(self) -> None:
        """Wait (up to `FLUSH_SECONDS`) until what was submitted so far has been sent."""
        with trio.move_on_after(FLUSH_SECONDS):
            await self._idle.wait()

    async def _relay(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            batch, self._pending = self._pending, []
            await self.send(batch)
            if not self._pending:
                self._idle.set()

    async def _sweep(self) -> None:
        while True:
            swept: list[Message] = []
            try:
                swept = await self.outbox.sweep(
                    SWEEP_BATCH,
                    grace_seconds=self.grace_seconds,
                    lease_seconds=SWEEP_LEASE_SECONDS,
                    horizon_seconds=self.broker.max_delay_seconds,
                )
            except DatabaseUnavailable as exc:
                log.warning("outbox sweep: database unavailable", extra={"error": str(exc)})
            if swept:
                log.info("outbox sweep: sending intents left behind", extra={"count": len(swept)})
                await self.send(swept)
            if len(swept) < SWEEP_BATCH:
                await trio.sleep(self.sweep_seconds)

    async def send(self, messages: Sequence[Message]) -> None:
        """Send ``messages`` (those due within the broker's longest delay; the others wait for
        the sweep), up to `SEND_CONCURRENCY` batches at once; delete the rows of those sent."""
        now = datetime.now(UTC)
        ready = [m for m in messages if m.delay_seconds(now) <= self.broker.max_delay_seconds]
        size = self.broker.max_batch
        batches = [ready[i : i + size] for i in range(0, len(ready), size)]
        sent: list[int] = []
        limiter = trio.CapacityLimiter(SEND_CONCURRENCY)

        async def send_one(batch: list[Message]) -> None:
            async with limiter:
                try:
                    sent.extend(await self.broker.send(batch))
                except QueueUnavailable as exc:
                    log.warning(
                        "outbox: send failed; the sweep sends it later",
                        extra={"error": str(exc), "count": len(batch)},
                    )

        async with trio.open_nursery() as nursery:
            for batch in batches:
                nursery.start_soon(send_one, batch)
        try:
            await self.outbox.sent(sent)
        except DatabaseUnavailable as exc:
            # sent, not deleted: the sweep sends them again, a duplicate the claim ignores
            log.warning("outbox: sent rows not deleted", extra={"error": str(exc)})
