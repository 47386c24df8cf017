"""Completion callbacks against real PostgreSQL, S3, an origin and a webhook receiver on
loopback; every delivery's signature is checked with `standardwebhooks` itself."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import signal
import socket
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import trio
from standardwebhooks import Webhook

from bgchallenge.db.database import open_database
from bgchallenge.db.migrate import migrate
from bgchallenge.db.repository import Deliveries
from bgchallenge.service import Role
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.origin import Origin
from tests.support.processes import ServiceProcess
from tests.support.receiver import Delivered, Receiver, serve_receiver
from tests.support.results import fetch_rows

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def with_callbacks(settings: Settings, delays: tuple[float, ...] = (0.05,) * 5) -> Settings:
    return dataclasses.replace(settings, webhook_secret=SECRET, callback_delays=delays)


async def enqueue(service: RunningService, url: str, callback_url: str) -> dict[str, Any]:
    response = await service.client.post(
        "/results/enqueue", json={"jobId": "job", "url": url, "callbackUrl": callback_url}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_until(
    service: RunningService, result_id: int, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the result (another task's delivery: nothing to wait on)."""
    while True:
        response = await service.client.get(f"/results/{result_id}")
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        if condition(result):
            return result
        await trio.sleep(0.05)


def callback_done(result: dict[str, Any]) -> bool:
    return result["callback"] is not None and result["callback"]["status"] != "pending"


def verified(delivery: Delivered) -> dict[str, Any]:
    """The body, once `standardwebhooks` has checked its signature (it raises otherwise)."""
    body: dict[str, Any] = Webhook(SECRET).verify(delivery.body, delivery.headers)
    return body


async def test_retried_until_delivered_then_failed_and_blocked(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    # The receiver listens on 127.0.0.2, which the service may not connect to.
    allowed = (ipaddress.ip_network("127.0.0.1/32"),)
    settings = dataclasses.replace(with_callbacks(settings), allow_networks=allowed)
    with trio.fail_after(IO_GUARD_SECONDS):
        receiver = await nursery.start(serve_receiver, Receiver())
        blocked = await nursery.start(serve_receiver, Receiver(host="127.0.0.2"))
        service = await start_service(nursery, settings)
        receiver.answers["/flaky"] = [500, 500]
        receiver.answers["/down"] = [500] * 10
        flaky = await enqueue(service, origin.url("a.png"), receiver.base_url + "/flaky?k=s3cr3t")
        down = await enqueue(service, origin.url("b.png"), receiver.base_url + "/down")
        guarded = await enqueue(service, origin.url("c.png"), blocked.base_url + "/hook")
        assert flaky["callback"] == {
            "url": receiver.base_url + "/flaky",
            "status": "pending",
            "attempts": 0,
            "lastError": None,
        }

        # 500 twice, then 200: three deliveries of one webhook-id, each signed.
        deliveries = await receiver.wait_for("/flaky", 3)
        assert len({d.headers["webhook-id"] for d in deliveries}) == 1
        bodies = [verified(d) for d in deliveries]
        assert [b["status"] for b in bodies] == ["succeeded"] * 3
        assert bodies[-1]["id"] == flaky["id"]
        result = await read_until(service, flaky["id"], callback_done)
        assert result["status"] == "succeeded"
        assert result["callback"] == {
            "url": receiver.base_url + "/flaky",
            "status": "delivered",
            "attempts": 3,
            "lastError": "the callback URL answered 500",
        }

        # Always failing: failed after 6 attempts; the result's own status is untouched.
        result = await read_until(service, down["id"], callback_done)
        assert result["status"] == "succeeded"
        assert result["callback"]["status"] == "failed"
        assert result["callback"]["attempts"] == 6
        assert len(receiver.at("/down")) == 6

        # A blocked address: never connected to, and the message names no address.
        result = await read_until(service, guarded["id"], callback_done)
        assert result["callback"]["status"] == "failed"
        assert result["callback"]["lastError"] == "the host's address is not allowed"
        assert blocked.received == []

        # The URLs as given (the query may be a credential) are kept only until the end.
        rows = fetch_rows(settings.database_url or "")
        assert [r["callback_target"] for r in rows] == [None, None, None]
        metrics = (await service.client.get("/metrics")).text
        assert 'bgc_callbacks_total{outcome="delivered"} 1.0' in metrics
        assert 'bgc_callbacks_total{outcome="failed"} 2.0' in metrics
        service.shutdown.set()


async def test_delivered_after_a_killed_worker_restarts(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    """The receiver is down while the worker process that ran the result is SIGKILLed after
    its terminal state: the worker process started next delivers."""
    settings = with_callbacks(settings, delays=(1.0, 1.0, 1.0))
    env = {
        "BGC_WEBHOOK_SECRET": SECRET,
        "BGC_CALLBACK_DELAYS": "1,1,1",
        "BGC_LEASE_SECONDS": "2",
    }
    with socket.socket() as probe:  # a free port, where the receiver will listen later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(IO_GUARD_SECONDS):
        web = await start_service(nursery, settings, Role.WEB)
        created = await enqueue(web, origin.url("a.png"), f"http://127.0.0.1:{port}/hook")
        first = ServiceProcess(settings, "worker", **env)
        try:
            # Killed once its first delivery attempt is recorded (the receiver is down): a
            # kill inside an attempt would leave its lease (10 s + BGC_LEASE_SECONDS) to run.
            await first.wait_event("callback retry scheduled")
            first.send(signal.SIGKILL)
            assert await first.wait_exit() == -signal.SIGKILL
        finally:
            first.close()
        receiver = await nursery.start(serve_receiver, Receiver(port=port))
        second = ServiceProcess(settings, "worker", **env)
        try:
            (delivery,) = await receiver.wait_for("/hook", 1)
            assert verified(delivery)["status"] == "succeeded"
            result = await read_until(web, created["id"], callback_done)
            assert result["status"] == "succeeded"
            assert result["callback"]["status"] == "delivered"
            assert result["callback"]["attempts"] == 2
            assert result["callback"]["lastError"] == "could not connect to the callback URL"
        finally:
            second.close()
        web.shutdown.set()


async def test_a_shutdown_hands_an_unanswered_delivery_back(
    settings: Settings, origin: Origin
) -> None:
    """The attempt a graceful shutdown interrupts is not spent: due again at once."""
    settings = with_callbacks(settings)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with trio.open_nursery() as outer:
            receiver = await outer.start(serve_receiver, Receiver())
            receiver.answers["/hook"] = [0]
            async with trio.open_nursery() as nursery:
                service = await start_service(nursery, settings)
                await enqueue(service, origin.url("a.png"), receiver.base_url + "/hook")
                await receiver.wait_for("/hook", 1)
                await service.client.aclose()
                service.shutdown.set()
            outer.cancel_scope.cancel()
    (row,) = fetch_rows(settings.database_url or "")
    assert (row["callback_status"], row["callback_attempts"]) == ("pending", 0)
    assert row["callback_lease_owner"] is None and row["callback_due_at"] is not None


@pytest.mark.parametrize("callback_url", ["https://example.com/hook", "ftp://x/y", 7])
async def test_no_callback_url_without_the_secret(
    service: RunningService, callback_url: object
) -> None:
    body = {"jobId": "job", "url": "https://example.com/a.png", "callbackUrl": callback_url}
    response = await service.client.post(
        "/results/enqueue",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert [e["pointer"] for e in response.json()["errors"]] == ["#/callbackUrl"]


def _ended_with_callback(database_url: str) -> int:
    """A result with a callback, canceled while queued: its delivery becomes due."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "INSERT INTO results (job_id, host, object_path, url, callback_url,"
            " callback_target, callback_id, callback_status)"
            " VALUES ('job', 'e.com', '/a', 'https://e.com/a', 'https://h.com/in',"
            " 'https://h.com/in?t=1', 'msg_1', 'pending') RETURNING id"
        ).fetchone()
        assert row is not None
        connection.execute(
            "UPDATE results SET status = 'canceled', canceled_at = now(), ended_at = now(),"
            " source_url = NULL WHERE id = %s",
            (row[0],),
        )
        return int(row[0])


def _lease_runs_out(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute("UPDATE results SET callback_due_at = now()")


async def test_a_delivery_attempt_is_fenced(database_url: str) -> None:
    """Two processes never both hold one attempt, and an attempt whose lease was taken over
    records nothing."""
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(database_url, max_size=4) as database:
            await migrate(database)
            result_id = await trio.to_thread.run_sync(_ended_with_callback, database_url)
            first = Deliveries(database, "first", lease_seconds=60.0)
            second = Deliveries(database, "second", lease_seconds=60.0)
            (held, *_), _ = await first.claim(10, 6)
            assert (held.result_id, held.attempt) == (result_id, 1)
            assert held.target == "https://h.com/in?t=1"
            assert await second.claim(10, 6) == ([], [])  # leased: not due

            # The first's lease runs out (moved to now): the second takes attempt 2.
            await trio.to_thread.run_sync(_lease_runs_out, database_url)
            (taken, *_), _ = await second.claim(10, 6)
            assert taken.attempt == 2
            assert not await first.delivered(held)
            assert await first.not_delivered(held, "late", 1.0) is None
            assert await second.delivered(taken)
            (row,) = fetch_rows(database_url)
            assert (row["callback_status"], row["callback_attempts"]) == ("delivered", 2)
            assert row["callback_target"] is None and row["callback_due_at"] is None
