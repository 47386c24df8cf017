"""The ``sqs`` transport: an Amazon SQS standard queue (or LocalStack's, or moto's).

A `Broker` over one boto3 SQS client; every call runs in a worker thread under this module's
own capacity limiter (the uploads' threads are never taken). A message's body is
``{"resultId": N}``; its delay is SQS's DelaySeconds (up to 900 s), its lease the message's
visibility timeout: set by the receive to the lease, extended by ChangeMessageVisibility.
Errors map to `QueueUnavailable`.

Cancellation: a receive (a long poll of ``BGC_SQS_WAIT_SECONDS``) is waited for, not
abandoned, and what it brought is released at once: an abandoned poll would take messages
that nobody then runs until their visibility timeout passes. The other calls are abandoned
when cancelled: their thread finishes the call, and nothing waits on the answer.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import trio
from botocore.exceptions import BotoCoreError, ClientError

from bgchallenge.boto import call_in_thread, client_config
from bgchallenge.domain.messages import Message
from bgchallenge.settings import Settings
from bgchallenge.work.queue import Delivery, QueueUnavailable

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)
T = TypeVar("T")

DEV_QUEUE_NAME = "bgchallenge-work"  # what `bgchallenge dev` creates on its moto server
MAX_BATCH = 10  # SendMessageBatch, ReceiveMessage and DeleteMessageBatch take at most 10
MAX_DELAY_SECONDS = 900
MAX_VISIBILITY_SECONDS = 43_200
# The relay's concurrent sends, the receive, and a lease call per running attempt.
EXTRA_THREADS = 10


def _visibility(seconds: float) -> int:
    return min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(seconds)))


def _body(result_id: int) -> str:
    return json.dumps({"resultId": result_id})


def _result_id(body: str) -> int | None:
    try:
        value = json.loads(body)["resultId"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def create_client(
    endpoint_url: str | None, *, threads: int, connect_timeout: float, read_timeout: float
) -> SQSClient:
    """Build the client in the calling (Trio) thread: client creation is not thread-safe."""
    config = client_config(
        threads=threads, connect_timeout=connect_timeout, read_timeout=read_timeout
    )
    client: SQSClient = boto3.session.Session().client(
        "sqs", endpoint_url=endpoint_url, config=config
    )
    return client


class SqsBroker:
    """`bgchallenge.work.queue.Broker` over one SQS queue."""

    max_batch = MAX_BATCH
    max_delay_seconds = float(MAX_DELAY_SECONDS)

    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        *,
        threads: int,
        lease_seconds: float,
        wait_seconds: int,
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.limiter = trio.CapacityLimiter(threads)
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds

    async def _call(
        self, function: Callable[..., T], /, *, abandon_on_cancel: bool = True, **kwargs: Any
    ) -> T:
        return await call_in_thread(
            function,
            {"QueueUrl": self.queue_url, **kwargs},
            limiter=self.limiter,
            abandon_on_cancel=abandon_on_cancel,
            map_error=lambda exc: QueueUnavailable(f"SQS {function.__name__}: {exc}"),
        )

    async def send(self, messages: Sequence[Message]) -> list[int]:
        now = datetime.now(UTC)
        entries = [
            {
                "Id": str(message.outbox_id),
                "MessageBody": _body(message.result_id),
                "DelaySeconds": min(MAX_DELAY_SECONDS, message.delay_seconds(now)),
            }
            for message in messages
        ]
        answer = await self._call(self.client.send_message_batch, Entries=entries)
        for failed in answer.get("Failed", []):
            log.warning(
                "SQS refused a message; the outbox sweep sends it again",
                extra={"outboxId": failed["Id"], "error": failed.get("Code")},
            )
        return [int(entry["Id"]) for entry in answer.get("Successful", [])]

    async def receive(self, limit: int) -> list[Delivery]:
        answer = await self._call(
            self.client.receive_message,
            abandon_on_cancel=False,
            MaxNumberOfMessages=max(1, min(limit, MAX_BATCH)),
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=_visibility(self.lease_seconds),
        )
        deliveries = []
        for message in answer.get("Messages", []):
            handle = message["ReceiptHandle"]
            result_id = _result_id(message.get("Body", ""))
            if result_id is None:
                log.warning("SQS message not ours; deleted", extra={"body": message.get("Body")})
                await self.finish(Delivery(0, handle))
            else:
                deliveries.append(Delivery(result_id, handle))
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                for delivery in deliveries:
                    await self.release(delivery, 0)
            raise
        return deliveries

    async def check(self) -> None:
        """Raise `QueueUnavailable` unless the queue answers (a wrong URL, missing IAM
        actions, an unreachable endpoint: found at start-up, not at the first enqueue)."""
        await self._call(
            self.client.get_queue_attributes, AttributeNames=["ApproximateNumberOfMessages"]
        )

    async def keep(self, delivery: Delivery, seconds: float) -> None:
        await self._change_visibility(delivery, seconds)

    async def release(self, delivery: Delivery, seconds: float) -> None:
        await self._change_visibility(delivery, seconds)

    async def _change_visibility(self, delivery: Delivery, seconds: float) -> None:
        await self._call(
            self.client.change_message_visibility,
            ReceiptHandle=str(delivery.handle),
            VisibilityTimeout=_visibility(seconds),
        )

    async def finish(self, delivery: Delivery) -> None:
        await self._call(self.client.delete_message, ReceiptHandle=str(delivery.handle))


@asynccontextmanager
async def open_broker(settings: Settings) -> AsyncIterator[SqsBroker]:
    """The broker for ``SQS_QUEUE_URL`` (at ``SQS_ENDPOINT_URL`` when set), once the queue
    answered; raises `QueueUnavailable` otherwise (``serve`` exits 1 with one line)."""
    assert settings.sqs_queue_url, "Settings.require_queue checks it"
    threads = settings.workers + EXTRA_THREADS
    client = create_client(
        settings.sqs_endpoint_url,
        threads=threads,
        connect_timeout=settings.connect_timeout,
        # a receive's answer takes its long poll, plus the usual
        read_timeout=settings.read_timeout + settings.sqs_wait_seconds,
    )
    try:
        broker = SqsBroker(
            client,
            settings.sqs_queue_url,
            threads=threads,
            lease_seconds=settings.lease_seconds,
            wait_seconds=settings.sqs_wait_seconds,
        )
        await broker.check()
        yield broker
    finally:
        client.close()


async def ensure_queue(endpoint_url: str | None, name: str) -> str:
    """Create the queue ``name`` unless it exists; answer its URL (for `bgchallenge dev` and
    the tests' moto server)."""
    client = create_client(endpoint_url, threads=1, connect_timeout=10, read_timeout=30)
    try:
        answer = await trio.to_thread.run_sync(lambda: client.create_queue(QueueName=name))
        return answer["QueueUrl"]
    except (ClientError, BotoCoreError) as exc:
        raise QueueUnavailable(f"SQS CreateQueue {name}: {exc}") from exc
    finally:
        client.close()
