"""The real RabbitMQ for the tests (``TEST_RABBITMQ_URL``, else guest on 127.0.0.1:5672).

Its fixtures (registered by tests/conftest.py) skip, saying why, when no broker answers; each
test gets queue names of its own, deleted afterwards with their delay queues.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

import aio_pika
import pytest
import trio
import trio_asyncio
from aio_pika.abc import AbstractChannel

from bgchallenge.queues.rabbitmq import delay_queue_name, delay_steps
from tests.support.servers import unique_name

T = TypeVar("T")
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
QUEUE_PREFIX = "bgc-test-"
# The retry delays of the tests' settings: each has a delay queue, deleted after the test.
TEST_RETRY_DELAYS = (0.05, 0.1, 0.2)


def rabbitmq_unreachable(url: str) -> str | None:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        return f"no RabbitMQ at {address[0]}:{address[1]} ({exc}); set TEST_RABBITMQ_URL"
    return None


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """The broker's URL; checked once per session, every RabbitMQ test skips without one."""
    url = os.environ.get("TEST_RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
    reason = rabbitmq_unreachable(url)
    if reason is not None:
        pytest.skip(reason)
    yield url
    # Delay queues of retry delays a test chose itself (their names are not known to
    # `rabbit_queue`): every queue this session named goes, where rabbitmqctl can list them.
    if shutil.which("rabbitmqctl"):
        trio.run(_delete_queues_starting, url, f"{QUEUE_PREFIX}{os.getpid()}x")  # unique_name's


class RabbitAdmin:
    """What the tests look at and do on the broker, each call on a connection of its own."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _run(self, work: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        async def run() -> T:
            async with await aio_pika.connect(self.url) as connection:
                return await work(await connection.channel())

        async with trio_asyncio.open_loop() as loop:
            answer: T = await loop.run_aio_coroutine(run())
            return answer

    async def message_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (not those delivered and unacknowledged)."""

        async def count(channel: AbstractChannel) -> int:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

        return await self._run(count)

    async def publish(self, queue: str, body: bytes) -> None:
        async def publish(channel: AbstractChannel) -> None:
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)

        await self._run(publish)

    async def delete(self, queues: Iterable[str]) -> None:
        async def delete(channel: AbstractChannel) -> None:
            for queue in queues:
                await channel.queue_delete(queue)

        await self._run(delete)


@pytest.fixture
def rabbit_admin(rabbitmq_url: str) -> RabbitAdmin:
    return RabbitAdmin(rabbitmq_url)


async def _delete_queues_starting(url: str, prefix: str) -> None:
    listed = await trio.run_process(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name"], capture_stdout=True
    )
    names = [n.strip() for n in listed.stdout.decode().splitlines() if n.startswith(prefix)]
    await RabbitAdmin(url).delete(names)


async def close_connections(connection_name: str) -> int:
    """Have the server close every connection named ``connection_name`` (as a broker restart
    or an operator would); answers how many it closed. Needs rabbitmqctl on this machine (the
    one server-side way to close a connection without the management plugin)."""
    if not shutil.which("rabbitmqctl"):
        pytest.skip("closing a connection from the server needs rabbitmqctl on this machine")
    listed = await trio.run_process(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
        capture_stdout=True,
    )
    closed = 0
    for line in listed.stdout.decode().splitlines():
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{connection_name}"}}' in properties:
            await trio.run_process(
                ["rabbitmqctl", "-q", "close_connection", pid, "closed by a test"],
                capture_stdout=True,
            )
            closed += 1
    return closed


@pytest.fixture
def rabbit_queue(rabbitmq_url: str) -> Iterator[str]:
    """A work queue name of this test's own; it and its delay queues are deleted after. (A
    plain fixture: the settings, a plain fixture too, may ask for it.)"""
    name = unique_name(QUEUE_PREFIX)
    yield name
    doomed = [name, *(delay_queue_name(name, step) for step in delay_steps(TEST_RETRY_DELAYS))]
    trio.run(RabbitAdmin(rabbitmq_url).delete, doomed)
