"""The RabbitMQ edge (bgchallenge/queues/rabbitmq.py) against the real broker: topology,
confirmed publishing, delays through dead-lettering, prefetch, acknowledgement, and the server
closing the connection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import trio

from bgchallenge.queues.rabbitmq import RabbitBroker, delay_queue_name
from bgchallenge.work.queue import Delivery, Message
from tests.support.rabbitmq import TEST_RETRY_DELAYS, RabbitAdmin, close_connections
from tests.support.results import eventually

GUARD_SECONDS = 20


@dataclass(frozen=True)
class Rabbit:
    url: str
    queue: str  # this test's own
    admin: RabbitAdmin

    async def start(self, nursery: trio.Nursery, *, prefetch: int = 4) -> RabbitBroker:
        broker = RabbitBroker(
            self.url,
            self.queue,
            prefetch=prefetch,
            retry_delays=TEST_RETRY_DELAYS,
            connection_name=self.queue,  # for close_connections
            receive_wait=0.3,  # how long an empty receive takes: the tests' time
        )
        await nursery.start(broker.run)
        return broker


@pytest.fixture
def rabbit(rabbitmq_url: str, rabbit_queue: str) -> Rabbit:
    return Rabbit(rabbitmq_url, rabbit_queue, RabbitAdmin(rabbitmq_url))


def messages(*result_ids: int, delay: float = 0.0) -> list[Message]:
    not_before = datetime.now(UTC) + timedelta(seconds=delay)
    return [Message(1000 + i, i, not_before) for i in result_ids]


async def receive_all(broker: RabbitBroker, count: int) -> list[Delivery]:
    received: list[Delivery] = []
    while len(received) < count:
        received += await broker.receive(count - len(received))
    return received


async def test_sent_messages_are_received_once_and_acknowledged(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery)
        assert await broker.send(messages(1, 2, 3)) == [1001, 1002, 1003]
        assert await rabbit.admin.message_count(rabbit.queue) == 3
        received = await receive_all(broker, 3)
        assert sorted(d.result_id for d in received) == [1, 2, 3]
        for delivery in received:
            await broker.finish(delivery)
        # Nothing comes back: acknowledged messages are gone from the broker.
        assert await broker.receive(3) == []
        assert await rabbit.admin.message_count(rabbit.queue) == 0


async def test_prefetch_bounds_what_a_consumer_holds_unacknowledged(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery, prefetch=2)
        await broker.send(messages(1, 2, 3, 4, 5))
        held = await receive_all(broker, 2)
        assert await broker.receive(5) == []  # the capacity is taken: nothing more delivered
        assert await rabbit.admin.message_count(rabbit.queue) == 3
        await broker.finish(held[0])
        more = await receive_all(broker, 1)
        assert more[0].result_id not in {d.result_id for d in held}
        assert await rabbit.admin.message_count(rabbit.queue) == 2


async def test_delayed_messages_wait_in_their_delay_queue_then_come_to_the_work_queue(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery)
        # 20 s rounds up to the 30 s queue: still there when looked at, whatever the machine's
        # speed; 0.05 s comes back through dead-lettering.
        await broker.send(messages(1, delay=20.0) + messages(2, delay=0.05))
        assert await rabbit.admin.message_count(delay_queue_name(rabbit.queue, 30_000)) == 1
        (delivery,) = await receive_all(broker, 1)
        assert delivery.result_id == 2
        await broker.finish(delivery)


async def test_a_released_message_comes_back_after_its_delay(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery)
        await broker.send(messages(1, 2))
        first, second = sorted(await receive_all(broker, 2), key=lambda d: d.result_id)
        await broker.release(second, 20.0)
        assert await rabbit.admin.message_count(delay_queue_name(rabbit.queue, 30_000)) == 1
        await broker.release(first, 0.1)
        (again,) = await receive_all(broker, 1)
        assert again.result_id == 1
        assert came_through(again) == {delay_queue_name(rabbit.queue, 100)}
        await broker.finish(again)
        assert await rabbit.admin.message_count(rabbit.queue) == 0


async def test_a_message_released_with_nothing_to_wait_for_backs_off(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    """A message whose result's lease has just expired is released with 0 s left until the
    reaper queues the result again: it must not spin through the consumer meanwhile."""
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery)
        await broker.send(messages(1))
        (delivery,) = await receive_all(broker, 1)
        seen: set[str] = set()
        for held_back in (50, 100, 200):  # 50 ms, doubling (each a delay queue here)
            await broker.release(delivery, 0)
            (delivery,) = await receive_all(broker, 1)
            assert came_through(delivery) - seen == {delay_queue_name(rabbit.queue, held_back)}
            seen = came_through(delivery)
        await broker.finish(delivery)


def came_through(delivery: Delivery) -> set[str]:
    """The delay queues the message was dead-lettered from (its x-death header)."""
    message = getattr(delivery.handle, "message")  # noqa: B009 (the transport's own handle)
    deaths = message.headers.get("x-death") or []
    return {str(death["queue"]) for death in deaths}


async def test_a_message_that_is_not_a_result_id_is_dropped(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery)
        await rabbit.admin.publish(rabbit.queue, b"not a number")
        await broker.send(messages(7))
        (delivery,) = await receive_all(broker, 1)
        assert delivery.result_id == 7
        await broker.finish(delivery)
        assert await rabbit.admin.message_count(rabbit.queue) == 0


async def test_the_server_closing_the_connection_loses_nothing(
    nursery: trio.Nursery, rabbit: Rabbit, caplog: pytest.LogCaptureFixture
) -> None:
    """Deliveries of the closed connection are redelivered on the new one; the old ones are
    stale (never acknowledged, never handed out again), and publishing works again."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(GUARD_SECONDS):
        broker = await rabbit.start(nursery)
        await broker.send(messages(1, 2, 3))
        before = await receive_all(broker, 2)  # the third one waits in the consumer
        assert await close_connections(rabbit.queue) == 1
        await eventually(lambda: "rabbitmq reconnected" in caplog.messages)
        after = await receive_all(broker, 3)
        assert sorted(d.result_id for d in after) == [1, 2, 3]
        for stale in before:
            await broker.finish(stale)  # a no-op: its message was redelivered
        assert await broker.send(messages(4)) == [1004]
        for delivery in after + await receive_all(broker, 1):
            await broker.finish(delivery)
        assert await broker.receive(4) == []
        assert await rabbit.admin.message_count(rabbit.queue) == 0


async def test_a_receiver_that_stopped_is_sent_nothing_more(
    nursery: trio.Nursery, rabbit: Rabbit
) -> None:
    """A shutdown cancels the receive under way: the consumer is cancelled, so what comes
    next goes to the other consumers instead of waiting for this process to exit."""
    with trio.fail_after(GUARD_SECONDS):
        stopping = await rabbit.start(nursery)
        other = await rabbit.start(nursery)
        assert await other.receive(1) == []  # both consume now
        with trio.move_on_after(0.1):
            await stopping.receive(1)
        await stopping.send(messages(1, 2, 3))
        received = await receive_all(other, 3)
        assert sorted(d.result_id for d in received) == [1, 2, 3]
