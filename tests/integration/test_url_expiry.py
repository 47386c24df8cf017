"""Presigned URLs' expiry in the workers: real PostgreSQL, S3 and origin servers on loopback."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import trio

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.origin import Origin
from tests.support.results import eventually, wait_until_terminal


def azure_sas(url: str, expires_at: datetime) -> str:
    """``url`` signed the Azure SAS way: ``se`` in UTC, with milliseconds."""
    moment = expires_at.astimezone(UTC)
    se = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}sv=2022-11-02&sp=r&se={se}&sig=bm90LWEtc2lnbmF0dXJl"


async def enqueue(service: RunningService, url: str) -> int:
    response = await service.client.post("/results/enqueue", json={"jobId": "job", "url": url})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def test_a_retry_that_would_be_due_after_the_expiry_fails_url_expired_at_once(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    slow_retries = dataclasses.replace(settings, retry_delays=(30.0, 30.0, 30.0))
    expires_at = datetime.now(UTC) + timedelta(seconds=10)
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, slow_retries)
        await enqueue(service, azure_sas(origin.url("down.png", fail=100), expires_at))
        # well before the 30 s retry: nothing is scheduled
        (row,) = await wait_until_terminal(database_url, 1, within=8)
        service.shutdown.set()
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "url_expired", 1)
    assert "503" in row["error_message"] and "before the next retry" in row["error_message"]
    assert origin.gets("down.png") == 1


@pytest.mark.parametrize(
    ("expires_in", "delay", "code"),
    [
        (timedelta(seconds=2), 3.5, "url_expired"),  # the 403 comes after the expiry
        (timedelta(hours=1), 0.0, "forbidden"),  # before it: the origin means it
    ],
)
async def test_a_403_after_the_expiry_is_url_expired(
    service: RunningService,
    origin: Origin,
    database_url: str,
    expires_in: timedelta,
    delay: float,
    code: str,
) -> None:
    expires_at = datetime.now(UTC) + expires_in
    with trio.fail_after(IO_GUARD_SECONDS):
        url = azure_sas(origin.url("private.png", status=403, delay=delay), expires_at)
        await enqueue(service, url)
        (row,) = await wait_until_terminal(database_url, 1)
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", code, 1)
    # the attempt started before the expiry and asked: the origin's refusal is what failed
    assert origin.gets("private.png") == 1
    assert "403" in row["error_message"]


async def test_claims_take_the_earliest_expiring_first_and_late_attempts_fail_unasked(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, dataclasses.replace(settings, workers=1))
        await enqueue(service, origin.url("busy.png", hold=1))
        await eventually(lambda: origin.gets("busy.png") == 1)  # the only worker is busy
        # enqueued in an order that is neither the id order nor the expiry order
        now = datetime.now(UTC)
        soon = now + timedelta(seconds=1)  # still valid when enqueued, not when claimed
        waiting = [
            ("none-a.png", None),
            ("late3.png", now + timedelta(hours=3)),
            ("late1.png", now + timedelta(hours=1)),
            ("none-b.png", None),
            ("late2.png", now + timedelta(hours=2)),
            ("soon.png", soon),
        ]
        for name, expires_at in waiting:
            url = origin.url(name)
            await enqueue(service, url if expires_at is None else azure_sas(url, expires_at))
        # the wall clock itself is the condition: soon.png's URL must have expired
        await trio.sleep((soon - datetime.now(UTC)).total_seconds() + 0.05)
        origin.release("busy.png")
        rows = await wait_until_terminal(database_url, 1 + len(waiting))
        service.shutdown.set()
    started = sorted(rows, key=lambda row: row["started_at"])
    assert [row["object_path"] for row in started] == [
        "/files/busy.png",
        "/files/soon.png",
        "/files/late1.png",
        "/files/late2.png",
        "/files/late3.png",
        "/files/none-a.png",
        "/files/none-b.png",
    ]
    by_path = {row["object_path"]: row for row in rows}
    expired = by_path.pop("/files/soon.png")
    assert (expired["status"], expired["error_code"], expired["attempts"]) == (
        "failed",
        "url_expired",
        1,
    )
    # an attempt that starts after the expiry asks the origin nothing
    assert origin.requests[("HEAD", "soon.png")] == origin.gets("soon.png") == 0
    assert {row["status"] for row in by_path.values()} == {"succeeded"}
