"""The service on ``BGC_QUEUE=rabbitmq`` against the real broker: what is particular to it.
(The behaviour every transport shares is tested on each of them by the `queue_transport`
tests.)"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket

import pytest
import trio

from bgchallenge.db.database import open_database
from bgchallenge.db.repository import Results
from bgchallenge.domain.enqueue import parse_enqueue_body
from bgchallenge.service import Role
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.origin import Origin
from tests.support.rabbitmq import RabbitAdmin, close_connections
from tests.support.results import eventually, fetch_rows, wait_until_terminal


@pytest.fixture
def settings(settings: Settings, rabbitmq_url: str, rabbit_queue: str) -> Settings:
    return dataclasses.replace(
        settings,
        queue="rabbitmq",
        rabbitmq_url=rabbitmq_url,
        rabbitmq_queue=rabbit_queue,
        outbox_grace_seconds=0.5,
        outbox_sweep_seconds=0.2,
    )


async def enqueue(service: RunningService, url: str) -> int:
    response = await service.client.post("/results/enqueue", json={"jobId": "job", "url": url})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


DROPPED = "message dropped: its result is not due"


def logged(caplog: pytest.LogCaptureFixture, message: str, result_id: int) -> bool:
    return any(
        r.getMessage() == message and getattr(r, "id", None) == result_id for r in caplog.records
    )


async def test_the_queue_carries_the_work_and_drops_what_is_not_due(
    settings: Settings,
    origin: Origin,
    database_url: str,
    rabbit_admin: RabbitAdmin,
    rabbit_queue: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no worker running, the messages wait in the queue and the results stay queued; a
    result canceled meanwhile, or already finished, has its message dropped, not run."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as services:
            web = await start_service(services, settings, Role.WEB)
            ids = [await enqueue(web, origin.url(f"{n}.png")) for n in range(3)]
            while await rabbit_admin.message_count(rabbit_queue) < 3:  # noqa: ASYNC110 (the broker's)
                await trio.sleep(0.05)
            assert {row["status"] for row in fetch_rows(database_url)} == {"queued"}
            canceled = (await web.client.post(f"/results/{ids[0]}/cancel")).json()
            assert canceled["status"] == "canceled"

            worker = await start_service(services, settings, Role.WORKER)
            rows = await wait_until_terminal(database_url, 3)
            await eventually(lambda: logged(caplog, DROPPED, ids[0]))
            # A message for a finished result (a duplicate) is dropped too.
            await rabbit_admin.publish(rabbit_queue, str(ids[1]).encode())
            await eventually(lambda: logged(caplog, DROPPED, ids[1]))
            for service in (web, worker):
                await service.client.aclose()
                service.shutdown.set()
        # Both stopped, their connections closed: an unacknowledged message would be back.
        assert await rabbit_admin.message_count(rabbit_queue) == 0
    assert [(r["id"], r["status"], r["attempts"]) for r in rows] == [
        (ids[0], "canceled", 0),
        (ids[1], "succeeded", 1),
        (ids[2], "succeeded", 1),
    ]
    assert origin.gets("0.png") == 0 and origin.gets("1.png") == 1


async def test_a_message_delivered_twice_runs_one_attempt(
    settings: Settings,
    origin: Origin,
    database_url: str,
    rabbit_admin: RabbitAdmin,
    rabbit_queue: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The second copy finds the result held by the live attempt: it waits for that lease
    (held back in a delay queue) instead of running it again, then finds it ended."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as services:
            service = await start_service(services, dataclasses.replace(settings, lease_seconds=2))
            result_id = await enqueue(service, origin.url("held.png", hold=1))
            await eventually(lambda: origin.gets("held.png") == 1)  # the attempt runs
            await rabbit_admin.publish(rabbit_queue, str(result_id).encode())
            await eventually(lambda: logged(caplog, "rabbitmq: message held back", result_id))
            origin.release("held.png")
            (row,) = await wait_until_terminal(database_url, 1)
            await eventually(lambda: logged(caplog, DROPPED, result_id))
            await service.client.aclose()
            service.shutdown.set()
        assert await rabbit_admin.message_count(rabbit_queue) == 0
    assert (row["status"], row["attempts"]) == ("succeeded", 1)
    assert origin.gets("held.png") == 1


async def test_a_commit_whose_message_was_never_sent_is_sent_by_the_sweep(
    service: RunningService, origin: Origin, database_url: str
) -> None:
    """A process that dies between the enqueue's commit and its publish leaves the intent in
    the outbox: another process's sweep sends it, and the result runs."""
    request = parse_enqueue_body(f'{{"jobId": "job", "url": "{origin.url("late.png")}"}}'.encode())
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(database_url, max_size=1) as database:
            dying = Results(database, outbox=lambda messages: None)  # commits, never publishes
            (enqueued,) = await dying.enqueue_many([request])
        assert enqueued.created
        (row,) = await wait_until_terminal(database_url, 1)
    assert (row["status"], row["attempts"]) == ("succeeded", 1)
    assert origin.gets("late.png") == 1


async def test_the_server_closing_the_connection_under_load_loses_nothing(
    service: RunningService,
    settings: Settings,
    origin: Origin,
    database_url: str,
    rabbit_queue: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every worker is mid-download and more messages wait when the server closes the
    connection: the running attempts finish (their messages, redelivered, find them held or
    ended), the waiting ones are redelivered and run, and enqueues go on: every result
    succeeds, each fetched exactly once."""
    caplog.set_level(logging.INFO)
    name = f"bgchallenge {rabbit_queue} {socket.gethostname()}:{os.getpid()}"
    held = [f"a{n}.png" for n in range(2 * settings.workers)]
    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as enqueues:
            for file in held:
                enqueues.start_soon(enqueue, service, origin.url(file, hold=1))
        await eventually(lambda: sum(origin.gets(file) for file in held) == settings.workers)
        assert await close_connections(name) == 1
        for file in held:
            origin.release(file)
        for n in range(10):
            await enqueue(service, origin.url(f"b{n}.png"))
        rows = await wait_until_terminal(database_url, len(held) + 10)
    assert any(r.getMessage() == "rabbitmq reconnected" for r in caplog.records)
    assert {(r["status"], r["attempts"]) for r in rows} == {("succeeded", 1)}
    assert all(count == 1 for (method, _), count in origin.requests.items() if method == "GET")
