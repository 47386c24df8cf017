"""The ``sqs`` transport against moto's SQS: duplicates, crashes around the commit, messages
for results that are not due any more, and the queue really carrying the work."""

from __future__ import annotations

import dataclasses
import json

import boto3
import psycopg
import pytest
import trio

from bgchallenge.db.database import open_database
from bgchallenge.db.repository import Results
from bgchallenge.domain.enqueue import parse_enqueue_body
from bgchallenge.domain.messages import Message
from bgchallenge.service import Role
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, start_service
from tests.support.origin import Origin
from tests.support.results import eventually, fetch_rows, insert_results, wait_until_terminal

pytestmark = pytest.mark.parametrize("queue_transport", ["sqs"])


class Queue:
    """The test's own view of the service's SQS queue."""

    def __init__(self, settings: Settings) -> None:
        assert settings.sqs_queue_url
        self.client = boto3.client("sqs", endpoint_url=settings.sqs_endpoint_url)
        self.url = settings.sqs_queue_url

    def send(self, body: str) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=body)

    def send_for(self, result_id: int) -> None:
        self.send(json.dumps({"resultId": result_id}))

    def counts(self) -> tuple[int, int, int]:
        """Visible, in flight (received, not deleted), delayed."""
        answer = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        attributes = answer["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            int(attributes["ApproximateNumberOfMessagesDelayed"]),
        )

    def empty(self) -> bool:
        return self.counts() == (0, 0, 0)


def outbox_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM queue_outbox").fetchone()
        assert row is not None
        return int(row[0])


async def test_a_message_delivered_twice_runs_one_attempt(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    # a short lease: the copy held back while the attempt runs comes back soon after
    settings = dataclasses.replace(settings, lease_seconds=2)
    queue = Queue(settings)
    (result_id,) = insert_results(database_url, [origin.url("twice.png", slow=0.05)], outbox=False)
    queue.send_for(result_id)
    queue.send_for(result_id)
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, settings, Role.WORKER)
        (row,) = await wait_until_terminal(database_url, 1)
        await eventually(queue.empty)  # both copies deleted: the second once it found the end
        service.shutdown.set()
    assert (row["status"], row["attempts"]) == ("succeeded", 1)
    assert origin.gets("twice.png") == 1


async def test_an_intent_a_crash_left_unsent_after_the_commit_is_sent_by_the_sweep(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    queue = Queue(settings)
    unsent: list[Message] = []
    request = parse_enqueue_body(
        json.dumps({"jobId": "crash", "url": origin.url("left.png")}).encode()
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(database_url, max_size=2) as database:
            # committed with its intent; the process "dies" before its relay sends it
            await Results(database, outbox=unsent.extend).enqueue_many([request])
        assert len(unsent) == 1 and outbox_rows(database_url) == 1 and queue.empty()
        service = await start_service(nursery, settings, Role.WORKER)
        (row,) = await wait_until_terminal(database_url, 1)
        await eventually(lambda: outbox_rows(database_url) == 0)
        await eventually(queue.empty)
        service.shutdown.set()
    assert (row["id"], row["status"], row["attempts"]) == (unsent[0].result_id, "succeeded", 1)
    assert origin.gets("left.png") == 1


async def test_messages_for_results_not_due_any_more_are_dropped(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    queue = Queue(settings)
    canceled, finished = insert_results(
        database_url, [origin.url("canceled.png"), origin.url("finished.png")], outbox=False
    )
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "UPDATE results SET status = CASE id WHEN %s THEN 'canceled' ELSE 'succeeded' END,"
            " ended_at = now(), source_url = NULL",
            (canceled,),
        )
    for result_id in (canceled, finished, finished + 1000):  # the last one: no such result
        queue.send_for(result_id)
    queue.send("not one of ours")
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, settings, Role.WORKER)
        await eventually(queue.empty)
        service.shutdown.set()
    rows = fetch_rows(database_url)
    assert [(r["status"], r["attempts"]) for r in rows] == [("canceled", 0), ("succeeded", 0)]
    assert origin.gets("canceled.png") == origin.gets("finished.png") == 0


async def test_the_queue_carries_the_work(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    # no sweep racing the relay (a duplicate is harmless, but the count below is exact)
    settings = dataclasses.replace(settings, outbox_grace_seconds=IO_GUARD_SECONDS)
    queue = Queue(settings)
    with trio.fail_after(IO_GUARD_SECONDS):
        web = await start_service(nursery, settings, Role.WEB)  # no workers anywhere
        for n in range(3):
            response = await web.client.post(
                "/results/enqueue", json={"jobId": "carried", "url": origin.url(f"c{n}.png")}
            )
            assert response.status_code == 202
        await eventually(lambda: queue.counts() == (3, 0, 0))  # the messages wait in SQS
        await eventually(lambda: outbox_rows(database_url) == 0)  # sent, so deleted
        assert [r["status"] for r in fetch_rows(database_url)] == ["queued"] * 3

        worker = await start_service(nursery, settings, Role.WORKER)
        rows = await wait_until_terminal(database_url, 3)
        await eventually(queue.empty)
        worker.shutdown.set()
        web.shutdown.set()
    assert [(r["status"], r["attempts"]) for r in rows] == [("succeeded", 1)] * 3
