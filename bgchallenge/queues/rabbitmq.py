"""The ``rabbitmq`` transport's edge: the only module that speaks AMQP (aio-pika, through
trio-asyncio as psycopg is).

Topology, declared on every (re)connection (idempotent; a queue deleted meanwhile is back):

- the work queue (``BGC_RABBITMQ_QUEUE``): a durable quorum queue, consumed by the workers;
- delay queues ``<work queue>.delay.<ms>``: one durable quorum queue per delay, no consumer,
  ``x-message-ttl`` the delay, dead-lettering (``at-least-once``, which quorum queues support
  from RabbitMQ 3.10 with ``x-overflow: reject-publish``) back into the work queue through the
  default exchange. A message is held back by publishing it to the delay queue of the shortest
  delay at least as long as asked (`round_up_delay`). One queue per delay rather than one queue
  with a TTL per message: a queue expires messages only from its head, so a long TTL would hold
  back every shorter one behind it; with one TTL per queue, queue order is expiry order.

Messages carry the result id (the body, in decimal; ``message_id`` is the outbox row's id, for
the logs). Publishing waits for the publisher confirms of a batch together; an unroutable
message (a queue deleted) is returned, and counts as not sent.

Consuming: one consumer whose prefetch is the process's worker capacity. A delivery stays
unacknowledged while its attempt runs and is acknowledged (`finish`) once the outcome is
recorded in PostgreSQL, so the broker's window of unacknowledged messages is exactly the free
capacity: no more is delivered than the workers can take, with no basic.qos round trips.
Unacknowledged messages need no lease renewal (`keep` does nothing): the broker redelivers them
when this consumer's connection or channel closes, and only then.

Connection: one task (`RabbitBroker.run`) keeps a connection with two channels (publishing with
confirms; consuming), and opens a new one with backoff whenever it closes, whatever closed it
(the server, the network, a channel error). Deliveries of a closed connection are stale: their
messages are redelivered by the broker, so they are dropped here, never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import aiormq
import pamqp.exceptions
import trio
import trio_asyncio
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from bgchallenge.db.database import run_bounded
from bgchallenge.settings import Settings
from bgchallenge.work.queue import Delivery, Message, QueueUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# The delays a message can be held back by, in milliseconds, besides the retry delays (each of
# which gets its own queue, so a retry waits exactly as configured). Rounding up to the next one
# at most doubles a wait; the longest bounds what `send` takes (`max_delay_seconds`).
DELAY_STEPS_MS = (50, 100, 250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 30_000, 60_000, 120_000)
CONNECT_TIMEOUT_SECONDS = 5.0
# Any one broker call (a publish awaiting its confirm, an ack, a declare) gets this long.
CALL_TIMEOUT_SECONDS = 10.0
RECONNECT_MAX_SECONDS = 5.0
# How long a publish waits for a connection before it fails (the outbox keeps the message).
RECONNECT_WAIT_SECONDS = 2.0
CLOSE_SECONDS = 2.0
# How long `receive` waits for a message before answering [].
RECEIVE_WAIT_SECONDS = 2.0
MAX_BATCH = 100
# A release asking for less than this is held back this long at least, doubling with each such
# release of the same message, up to the maximum (see `RabbitBroker.release`).
MIN_HOLD_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 4.0
HOLDS_HEADER = "bgc-holds"

# Failures of the broker or the connection (as opposed to bugs): a call that raises one of
# these raises QueueUnavailable.
_BROKER_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    pamqp.exceptions.PAMQPException,
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


def delay_queue_name(queue: str, milliseconds: int) -> str:
    return f"{queue}.delay.{milliseconds}"


def delay_steps(extra_seconds: Iterable[float] = ()) -> tuple[int, ...]:
    """The delay queues' TTLs (ms, ascending): the fixed steps and ``extra_seconds`` (the retry
    delays), each rounded up to a whole millisecond."""
    extra = {math.ceil(seconds * 1000) for seconds in extra_seconds if seconds > 0}
    return tuple(sorted(set(DELAY_STEPS_MS) | extra))


def round_up_delay(seconds: float, steps: Sequence[int]) -> int | None:
    """The delay queue (its TTL in ms) that holds a message back at least ``seconds``: the
    shortest step not shorter; the longest if none is that long (the caller sees the message
    early and holds it back again). None: no delay, straight into the work queue."""
    if seconds <= 0:
        return None
    wanted = seconds * 1000
    return next((step for step in steps if step >= wanted), steps[-1])


@dataclass(eq=False)
class _Session:
    """One connection and what was opened on it; `lost` is set once any of it closed."""

    connection: AbstractConnection
    publisher: AbstractChannel
    consumer: AbstractChannel
    lost: trio.Event = field(default_factory=trio.Event)
    consuming: bool = False  # the consumer is started, or being started
    consumer_tag: str | None = None
    queue: AbstractQueue | None = None  # the work queue on the consumer channel


@dataclass(frozen=True)
class _Outgoing:
    body: bytes
    message_id: str | None
    delay: float  # seconds
    holds: int = 0  # releases in a row with (almost) nothing to wait for


@dataclass(frozen=True, eq=False)
class _Handle:
    session: _Session
    message: AbstractIncomingMessage


def _parse_result_id(body: bytes) -> int | None:
    text = body.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and len(text) <= 19 else None


class RabbitBroker:
    """`bgchallenge.work.queue.Broker` over RabbitMQ. Usable while `run` runs (started with
    ``nursery.start``: ready once connected and the topology declared)."""

    max_batch = MAX_BATCH

    def __init__(
        self,
        url: str,
        queue: str,
        *,
        prefetch: int,
        retry_delays: Iterable[float] = (),
        connection_name: str = "bgchallenge",
        receive_wait: float = RECEIVE_WAIT_SECONDS,
    ) -> None:
        self.url = url
        self.connection_name = connection_name  # how the broker's tools show the connection
        self.queue = queue
        self.prefetch = max(1, prefetch)
        self.steps = delay_steps(retry_delays)
        self.max_delay_seconds = self.steps[-1] / 1000
        self.receive_wait = receive_wait
        self._loop: Any = None
        self._session: _Session | None = None
        self._ready = trio.Event()  # set while `_session` is up
        self._want_consuming = False
        self._buffer: deque[Delivery] = deque()
        self._arrived = trio.Event()

    # -- the connection ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a connection until cancelled, reconnecting with backoff (up to 5 s) whenever it
        closes. Reports started once first connected with the topology declared. Failures are
        logged and retried, never raised; cancellation closes the connection (the broker then
        redelivers every message not yet acknowledged)."""
        async with trio_asyncio.open_loop() as loop:
            self._loop = loop
            try:
                await self._keep_connected(task_status)
            finally:
                self._loop = None

    async def _keep_connected(self, task_status: trio.TaskStatus[None]) -> None:
        delay = 0.1
        started = False
        while True:
            session: _Session | None = None
            try:
                session = await self._open_session()
                self._session = session
                self._ready.set()
                if self._want_consuming:
                    await self._consume(session)
                if not started:
                    task_status.started()
                    started = True
                else:
                    log.info("rabbitmq reconnected")
                delay = 0.1
                await session.lost.wait()
                log.warning("rabbitmq connection lost; reconnecting")
            except QueueUnavailable as exc:
                log.warning("rabbitmq unavailable; retrying", extra={"error": str(exc)})
            except Exception:  # aio-pika raising what it should not: reconnect, loudly
                log.exception("rabbitmq: unexpected error; reconnecting")
            finally:
                self._session = None
                if self._ready.is_set():
                    self._ready = trio.Event()
                if session is not None:
                    with trio.CancelScope(shield=True):
                        await self._close(session)
            await trio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _aio(self, coro: Coroutine[Any, Any, T], seconds: float = CALL_TIMEOUT_SECONDS) -> T:
        """Run an asyncio coroutine on this broker's loop, bounded; broker failures become
        QueueUnavailable."""
        if self._loop is None:
            coro.close()
            raise QueueUnavailable("rabbitmq: not running")
        try:
            with trio.fail_after(seconds):
                return await run_bounded(self._loop, coro)
        except trio.TooSlowError:
            raise QueueUnavailable(f"rabbitmq: no answer within {seconds} s") from None
        except _BROKER_ERRORS as exc:
            raise QueueUnavailable(f"rabbitmq: {exc!r}") from exc

    async def _open_session(self) -> _Session:
        async def open_() -> _Session:
            connection = await aio_pika.connect(
                self.url,
                timeout=CONNECT_TIMEOUT_SECONDS,
                client_properties={"connection_name": self.connection_name},
            )
            try:
                publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
                consumer = await connection.channel(publisher_confirms=False)
                await consumer.set_qos(prefetch_count=self.prefetch)
                await self._declare(publisher)
            except BaseException:
                await connection.close()
                raise
            return _Session(connection, publisher, consumer)

        session = await self._aio(open_(), CONNECT_TIMEOUT_SECONDS + CALL_TIMEOUT_SECONDS)

        def lost(*_: object) -> None:
            self._lose(session)

        session.connection.close_callbacks.add(lost)
        session.publisher.close_callbacks.add(lost)
        session.consumer.close_callbacks.add(lost)
        if session.connection.is_closed or session.publisher.is_closed:
            session.lost.set()
        return session

    def _lose(self, session: _Session) -> None:
        """Mark ``session`` closed; callers of `_current` wait for the next one from now."""
        session.lost.set()
        if self._session is session and self._ready.is_set():
            self._ready = trio.Event()

    async def _declare(self, channel: AbstractChannel) -> None:
        """The work queue and its delay queues (asyncio side)."""
        await channel.declare_queue(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for milliseconds in self.steps:
            await channel.declare_queue(
                delay_queue_name(self.queue, milliseconds),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": milliseconds,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.queue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )

    async def _close(self, session: _Session) -> None:
        with trio.move_on_after(CLOSE_SECONDS), contextlib.suppress(QueueUnavailable):
            await self._aio(session.connection.close(), CLOSE_SECONDS)

    async def _current(self) -> _Session:
        """The connection, waiting up to `RECONNECT_WAIT_SECONDS` for one (a reconnection under
        way takes a fraction of a second)."""
        with trio.move_on_after(RECONNECT_WAIT_SECONDS):
            await self._ready.wait()
        session = self._session
        if session is None or session.lost.is_set():
            raise QueueUnavailable("rabbitmq: not connected")
        return session

    # -- publishing --------------------------------------------------------------------------

    def _routing_key(self, delay_seconds: float) -> str:
        step = round_up_delay(delay_seconds, self.steps)
        return self.queue if step is None else delay_queue_name(self.queue, step)

    async def _publish(self, session: _Session, items: Sequence[_Outgoing]) -> list[bool]:
        """Publish ``items`` together; answer, for each, whether the broker confirmed it."""

        async def one(item: _Outgoing) -> bool:
            message = aio_pika.Message(
                item.body,
                message_id=item.message_id,
                headers={HOLDS_HEADER: item.holds} if item.holds else None,
                content_type="text/plain",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await session.publisher.default_exchange.publish(
                message, routing_key=self._routing_key(item.delay), mandatory=True
            )
            return True

        async def all_() -> list[bool | BaseException]:
            return await asyncio.gather(*(one(item) for item in items), return_exceptions=True)

        answers = await self._aio(all_())
        confirmed = [answer is True for answer in answers]
        failures = [a for a in answers if isinstance(a, BaseException)]
        if failures and not any(confirmed):
            first = failures[0]
            if not isinstance(first, _BROKER_ERRORS):
                raise first
            raise QueueUnavailable(f"rabbitmq: publish failed: {first!r}")
        return confirmed

    async def send(self, messages: Sequence[Message]) -> list[int]:
        """Publish ``messages`` (each held back until its ``not_before``, rounded up to a delay
        queue); answer the outbox ids the broker confirmed."""
        if not messages:
            return []
        session = await self._current()
        now = datetime.now(UTC)
        # To the millisecond, not `Message.delay_seconds`'s whole seconds: the delay queues
        # hold a message back by as little as the shortest step.
        items = [
            _Outgoing(
                str(m.result_id).encode(),
                str(m.outbox_id),
                max(0.0, (m.not_before - now).total_seconds()),
            )
            for m in messages
        ]
        confirmed = await self._publish(session, items)
        return [m.outbox_id for m, ok in zip(messages, confirmed, strict=True) if ok]

    # -- consuming ---------------------------------------------------------------------------

    async def _consume(self, session: _Session) -> None:
        if session.consuming:
            return
        session.consuming = True

        async def on_message(message: AbstractIncomingMessage) -> None:
            if not self._want_consuming or session.lost.is_set():
                await message.reject(requeue=True)
                return
            result_id = _parse_result_id(message.body)
            if result_id is None:
                log.warning(
                    "rabbitmq: message without a result id dropped",
                    extra={"messageId": message.message_id},
                )
                await message.ack()
                return
            self._buffer.append(Delivery(result_id, _Handle(session, message)))
            self._arrived.set()

        async def start() -> str:
            session.queue = await session.consumer.get_queue(self.queue, ensure=False)
            return await session.queue.consume(on_message)

        try:
            session.consumer_tag = await self._aio(start())
        except BaseException:
            self._lose(session)  # a session that cannot consume is replaced by one that can
            raise

    async def receive(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` deliveries, waiting up to ``receive_wait`` seconds for the first; []
        if none came. The first call starts the consumer (a process that never receives, a
        web process, never consumes)."""
        self._want_consuming = True
        try:
            session = self._session
            if session is not None and not session.lost.is_set():
                await self._consume(session)
            with trio.move_on_after(self.receive_wait):
                while not self._take_ready():
                    self._arrived = trio.Event()
                    await self._arrived.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_SECONDS):
                await self._stop_consuming()
            raise
        answer: list[Delivery] = []
        while self._buffer and len(answer) < limit:
            delivery = self._buffer.popleft()
            if not self._stale(delivery):
                answer.append(delivery)
        return answer

    async def _stop_consuming(self) -> None:
        """The receiver stopped (a shutdown): cancel the consumer and give back at once what it
        was sent and nobody took, for other consumers to run meanwhile."""
        self._want_consuming = False
        buffered = [d for d in self._buffer if not self._stale(d)]
        self._buffer.clear()
        session = self._session
        if session is None or session.lost.is_set() or session.queue is None:
            return
        queue, tag = session.queue, session.consumer_tag
        session.consuming, session.consumer_tag = False, None
        with contextlib.suppress(QueueUnavailable):
            if tag is not None:
                await self._aio(queue.cancel(tag))
            for delivery in buffered:
                await self._aio(self._handle(delivery).message.reject(requeue=True))

    def _take_ready(self) -> bool:
        """Drop stale deliveries from the front; whether a live one is there."""
        while self._buffer and self._stale(self._buffer[0]):
            self._buffer.popleft()
        return bool(self._buffer)

    @staticmethod
    def _handle(delivery: Delivery) -> _Handle:
        handle = delivery.handle
        assert isinstance(handle, _Handle), "a delivery from RabbitBroker.receive"
        return handle

    def _stale(self, delivery: Delivery) -> bool:
        """Received on a connection that has closed since: the broker redelivers it."""
        return self._handle(delivery).session.lost.is_set()

    async def keep(self, delivery: Delivery, seconds: float) -> None:
        """Nothing to do: an unacknowledged message stays with this consumer until its
        connection closes."""
        await trio.lowlevel.checkpoint()

    async def finish(self, delivery: Delivery) -> None:
        """Acknowledge. A delivery of a closed connection cannot be (the broker redelivers its
        message, which then finds its result finished and is dropped)."""
        handle = self._handle(delivery)
        if handle.session.lost.is_set():
            await trio.lowlevel.checkpoint()
            return
        await self._aio(handle.message.ack())

    async def release(self, delivery: Delivery, seconds: float) -> None:
        """Give the message back, to come again no sooner than ``seconds`` from now, by
        publishing a copy to a delay queue and, once confirmed, acknowledging this one (a crash
        between the two leaves one duplicate, harmless). Should that publish fail, it is
        requeued at once instead.

        A message released again and again with (almost) nothing to wait for — its result's
        lease expired and the reaper has not yet queued it again — backs off: 50 ms, doubling
        with each such release (counted in a header), up to `MAX_BACKOFF_SECONDS`; it never
        spins."""
        handle = self._handle(delivery)
        session = handle.session
        if session.lost.is_set():
            await trio.lowlevel.checkpoint()
            return
        holds = _holds(handle.message)
        backoff = min(MIN_HOLD_SECONDS * 2**holds, MAX_BACKOFF_SECONDS)
        if seconds >= MIN_HOLD_SECONDS:
            item = _Outgoing(handle.message.body, handle.message.message_id, seconds)
        else:
            item = _Outgoing(handle.message.body, handle.message.message_id, backoff, holds + 1)
        try:
            if (await self._publish(session, [item]))[0]:
                await self._aio(handle.message.ack())
                log.info(
                    "rabbitmq: message held back",
                    extra={"id": delivery.result_id, "seconds": round(item.delay, 3)},
                )
                return
        except QueueUnavailable as exc:
            log.warning(
                "rabbitmq: could not hold a message back; requeued at once",
                extra={"id": delivery.result_id, "error": str(exc)},
            )
        if not session.lost.is_set():
            await self._aio(handle.message.reject(requeue=True))


def _holds(message: AbstractIncomingMessage) -> int:
    holds = (message.headers or {}).get(HOLDS_HEADER)
    return holds if isinstance(holds, int) and 0 <= holds < 64 else 0


@asynccontextmanager
async def open_broker(settings: Settings) -> AsyncIterator[RabbitBroker]:
    """The broker for ``RABBITMQ_URL``, connected (waiting, with retries, until the broker
    answers) and its topology declared; closed when the block ends."""
    assert settings.rabbitmq_url, "Settings.require_queue checks it"
    host = f"{socket.gethostname()}:{os.getpid()}"
    broker = RabbitBroker(
        settings.rabbitmq_url,
        settings.rabbitmq_queue,
        prefetch=settings.workers,
        retry_delays=settings.retry_delays,
        # as the broker's tools show it: which queue, which process
        connection_name=f"bgchallenge {settings.rabbitmq_queue} {host}",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        try:
            yield broker
        finally:
            nursery.cancel_scope.cancel()
