"""The work queue as a port: what the workers need of whatever carries the work.

PostgreSQL always stays the record of every result (state, attempts, lease, identity, list,
cancel, stream). A transport only carries the *work*: which result is due to run, when. Two
kinds of transport sit behind the same port, `WorkQueue`:

- ``postgres`` (bgchallenge/queues/postgres.py): the results table is the queue. NOTIFY
  announces work in the enqueue's own commit; due rows are claimed with FOR UPDATE SKIP LOCKED.
- a broker (``sqs``, ``rabbitmq``; bgchallenge/queues/<name>.py, each implementing `Broker`):
  messages carry result ids. They are written to an outbox table in the same commit as the
  change that makes a result due (enqueue, retry, hand-back, reap), sent right after that
  commit by the `Relay` (bgchallenge/work/outbox.py), and by its sweep when a crash left a row
  behind: a committed result is never without its message.
  Workers receive messages, claim each result by id with the same fenced update as the
  ``postgres`` claim (bgchallenge/work/brokered.py), keep the message invisible while the
  attempt runs, and finish (delete) it once the attempt's outcome is recorded.

Delivery is at least once on every transport; the outcome is recorded exactly once, because
every outcome is fenced on (lease owner, attempt number) in PostgreSQL. A message that finds
its result no longer due (finished, canceled, gone) is finished and ignored; one whose result
a live attempt holds, or that came before its result is due, is released to come back later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from bgchallenge.domain.messages import Message
from bgchallenge.domain.results import Claim

__all__ = ["Broker", "Delivery", "Message", "OutboxSink", "QueueUnavailable", "WorkQueue"]


class QueueUnavailable(Exception):
    """The broker could not be reached, refused the call, or timed out. Nothing is lost: an
    unsent message stays in the outbox, an unfinished one is delivered again."""


@dataclass(frozen=True, eq=False)
class Delivery:
    """A message as a worker received it. ``handle`` is the transport's own (an SQS receipt
    handle, an AMQP delivery tag and channel): only the `Broker` that made it reads it."""

    result_id: int
    handle: object


# Called with the messages a statement wrote to the outbox, right after its commit.
OutboxSink = Callable[[Sequence[Message]], None]


class Broker(Protocol):
    """One broker transport. Every method may raise `QueueUnavailable`; every method is a Trio
    coroutine and cancellable (a call cancelled midway loses nothing: see each method)."""

    # Most messages one `send` or `receive` call moves (SQS: 10).
    max_batch: int
    # Longest delay `send` can apply (SQS: 900 s). A message due later stays in the outbox
    # until it is due within this; the relay's sweep sends it then.
    max_delay_seconds: float

    async def send(self, messages: Sequence[Message]) -> list[int]:
        """Send up to `max_batch` messages, each held back until its ``not_before`` (rounded up
        to the broker's unit: a message is never delivered before its result is due). Answers
        the outbox ids of the messages the broker accepted (durably: an SQS 200, a RabbitMQ
        publisher confirm); the others stay in the outbox. Delivery is at least once, so a
        message sent twice (a relay and a sweep racing) is harmless."""
        ...

    async def receive(self, limit: int) -> list[Delivery]:
        """Wait (a bounded long poll, a few seconds at most) for up to ``limit`` messages
        (1 <= limit <= max_batch: the free worker capacity); answer [] if none came. Each one
        answered is invisible to other receivers for the lease (`keep` extends it) until it is
        finished or released. Cancelled midway: whatever it received is released."""
        ...

    async def keep(self, delivery: Delivery, seconds: float) -> None:
        """The lease: keep ``delivery`` invisible ``seconds`` more from now. Called on the
        same cadence as the PostgreSQL lease extension (a third of the lease)."""
        ...

    async def release(self, delivery: Delivery, seconds: float) -> None:
        """Give ``delivery`` back unfinished, to be delivered again no sooner than ``seconds``
        from now (0: at once). Used for a message that came before its result is due, or
        whose result a live attempt holds (it waits for that lease: neither run twice nor
        dropped)."""
        ...

    async def finish(self, delivery: Delivery) -> None:
        """Delete (acknowledge) ``delivery``: never delivered again. Done once the attempt's
        outcome is recorded in PostgreSQL (any outcome: a retry or hand-back wrote a new
        message intent to the outbox in that same commit), or when its result is not due any
        more. A finish that fails is harmless: the message comes back and is then dropped."""
        ...


class WorkQueue(Protocol):
    """What the worker subtree (bgchallenge/work/workers.py) needs of the queue.

    At least once: a claim can only come from a fenced update of the result in PostgreSQL, so
    a duplicated message never runs an attempt twice. Scheduling a retry for a time is the
    outcome query's job (``schedule_retry`` sets ``due_at``; on a broker transport it writes
    the message intent, delayed until then, in the same statement); `outbox` says whether the
    repositories must write those intents."""

    # True for broker transports: enqueue, retries, hand-backs and the reaper write outbox rows.
    outbox: bool

    async def serve(
        self,
        send: trio.MemorySendChannel[Claim],
        *,
        capacity: int,
        hand_back: Callable[[Claim], Awaitable[object]],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Receive due work and claim it, never more than the free capacity (``capacity`` less
        the claims handed over and not yet `attempt_finished`), and hand each claim over on
        ``send``, until cancelled. On cancellation, claims no worker took go to ``hand_back``
        and ``send`` is closed (the workers stop once their attempt ends). Outages are logged
        and waited out, never raised."""
        ...

    def wake(self) -> None:
        """A hint that work may be due (a NOTIFY, a reconnect): look at once."""
        ...

    def attempt_finished(self) -> None:
        """A worker is free again (called once per claim handed over, after `finish`)."""
        ...

    async def keep(self, claim: Claim) -> None:
        """Extend the transport's lease on a running claim; called right after each successful
        PostgreSQL lease extension (which stays the authority: a lost lease stops the
        attempt whatever the transport says)."""
        ...

    async def finish(self, claim: Claim) -> None:
        """The attempt is over and its outcome recorded (or handed back, or not ours any
        more): drop the transport's hold on it. Never raises."""
        ...
