"""Workers in one process, against real PostgreSQL, S3 and origin servers on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import itertools

import pytest
import trio

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, on_every_queue, start_service
from tests.support.origin import Origin, body_sha256
from tests.support.results import Bucket, wait_until_terminal

MIB = 1024 * 1024


@pytest.fixture
def bucket_state(s3_endpoint: str, bucket: str) -> Bucket:
    return Bucket(s3_endpoint, bucket)


async def enqueue(service: RunningService, url: str, job: str = "job") -> int:
    response = await service.client.post("/results/enqueue", json={"jobId": job, "url": url})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


@on_every_queue
async def test_can_complete_on_notify(
    service: RunningService, origin: Origin, database_url: str, bucket_state: Bucket
) -> None:
    # the sweep is 60 s in these settings: only the NOTIFY (a broker: its message) can wake
    # the dispatcher in time
    with trio.fail_after(IO_GUARD_SECONDS):
        result_id = await enqueue(service, origin.url("cat.png", size=5000) + "&sig=secret")
        (row,) = await wait_until_terminal(database_url, 1, within=5)
        detail = (await service.client.get(f"/results/{result_id}")).json()
    assert row["status"] == "succeeded", row
    assert row["source_url"] is None  # the presigned query is erased once terminal
    assert detail["attempts"] == 1 and detail["error"] is None
    storage = detail["storage"]
    assert storage["key"] == f"results/{result_id}/cat.png"
    assert storage["size"] == 5000 and storage["contentType"] == "image/png"
    assert storage["sha256"] == body_sha256(5000)
    body, content_type = bucket_state.object(storage["key"])
    assert hashlib.sha256(body).hexdigest() == body_sha256(5000)
    assert content_type == "image/png"
    assert detail["startedAt"] and detail["endedAt"] and detail["durationMs"] is not None
    assert origin.gets("cat.png") == 1
    assert bucket_state.uploads() == []


@pytest.mark.parametrize(
    ("knobs", "code"),
    [
        ({"head": 404, "status": 404}, "not_found"),
        ({"head": 410, "status": 410}, "not_found"),
        ({"type": "text/html"}, "not_an_image"),
        ({"head_length": 20 * MIB + 1}, "too_large"),
        ({"status": 401, "head": 401}, "forbidden"),
        ({"status": 204, "head": 204}, "bad_status"),
    ],
)
async def test_fails_on_invalid_head(
    service: RunningService,
    origin: Origin,
    database_url: str,
    bucket_state: Bucket,
    knobs: dict[str, object],
    code: str,
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await enqueue(service, origin.url("bad.png", **knobs))
        (row,) = await wait_until_terminal(database_url, 1)
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", code, 1)
    assert origin.gets("bad.png") == 0  # refused on HEAD, before any GET
    assert bucket_state.object_keys() == [] and bucket_state.uploads() == []


async def test_exactly_the_limit_succeeds_and_one_byte_more_fails(
    service: RunningService, origin: Origin, database_url: str, bucket_state: Bucket
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS * 2):
        await enqueue(service, origin.url("limit.png", size=20 * MIB))
        # no Content-Length anywhere: only the bytes received can tell
        await enqueue(
            service, origin.url("over.png", size=20 * MIB + 1, chunked=1, head_length=100)
        )
        rows = await wait_until_terminal(database_url, 2, within=60)
    by_path = {row["object_path"]: row for row in rows}
    limit, over = by_path["/files/limit.png"], by_path["/files/over.png"]
    assert limit["status"] == "succeeded" and limit["storage_size"] == 20 * MIB
    assert limit["storage_sha256"] == body_sha256(20 * MIB)
    assert (over["status"], over["error_code"]) == ("failed", "too_large")
    assert bucket_state.object_keys() == [limit["storage_key"]]
    assert bucket_state.uploads() == []


async def test_head_refused_is_validated_on_get(
    service: RunningService, origin: Origin, database_url: str, bucket_state: Bucket
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await enqueue(service, origin.url("presigned.png", head=403))
        await enqueue(service, origin.url("presigned.html", head=405, type="text/html"))
        rows = await wait_until_terminal(database_url, 2)
    assert [(r["status"], r["error_code"]) for r in rows] == [
        ("succeeded", None),
        ("failed", "not_an_image"),
    ]
    assert len(bucket_state.object_keys()) == 1 and bucket_state.uploads() == []


@on_every_queue
async def test_fails_twice_then_succeeds_after_the_configured_delays(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    delays = (0.3, 0.6, 1.2)
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, dataclasses.replace(settings, retry_delays=delays))
        await enqueue(service, origin.url("flaky.png", fail=2))
        (row,) = await wait_until_terminal(database_url, 1)
        service.shutdown.set()
    assert (row["status"], row["attempts"]) == ("succeeded", 3)
    times = origin.get_times["flaky.png"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert gaps[0] >= delays[0] and gaps[1] >= delays[1], gaps


@on_every_queue
async def test_always_failing_is_exhausted_after_four_attempts(
    service: RunningService, origin: Origin, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await enqueue(service, origin.url("down.png", fail=100))
        (row,) = await wait_until_terminal(database_url, 1)
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "exhausted", 4)
    assert "503" in row["error_message"]
    assert origin.gets("down.png") == 4


async def test_follows_redirects_up_to_five(
    service: RunningService, origin: Origin, database_url: str
) -> None:
    target = origin.url("target.png")
    chain = target
    for _ in range(5):
        chain = origin.url("hop", redirect=chain.replace("&", "%26").replace("?", "%3F"))
    too_long = origin.url("hop", redirect=chain.replace("&", "%26").replace("?", "%3F"))
    with trio.fail_after(IO_GUARD_SECONDS):
        await enqueue(service, chain, job="five")
        await enqueue(service, too_long, job="six")
        await enqueue(service, origin.url("ftp", redirect="ftp://127.0.0.1/x.png"), job="ftp")
        rows = await wait_until_terminal(database_url, 3)
    outcome = {row["job_id"]: (row["status"], row["error_code"]) for row in rows}
    assert outcome == {
        "five": ("succeeded", None),
        "six": ("failed", "bad_redirect"),
        "ftp": ("failed", "bad_redirect"),
    }


async def test_address_guard_refuses_loopback_when_not_allowed(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    only_127_0_0_1 = dataclasses.replace(
        settings, allow_networks=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    port = origin.base_url.rsplit(":", 1)[1]
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, only_127_0_0_1)
        await enqueue(service, origin.url("allowed.png"), job="allowed")
        await enqueue(service, f"http://localhost:{port}/files/name.png", job="localhost")
        await enqueue(service, f"http://127.0.0.2:{port}/files/other.png", job="other-loopback")
        await enqueue(service, f"http://[::1]:{port}/files/v6.png", job="v6-loopback")
        await enqueue(service, f"http://[::ffff:127.0.0.2]:{port}/files/m.png", job="mapped")
        await enqueue(service, f"http://10.0.0.1:{port}/files/p.png", job="private")
        await enqueue(service, f"http://169.254.169.254:{port}/files/m.png", job="metadata")
        await enqueue(
            service,
            origin.url("r", redirect=f"http://127.0.0.2:{port}/files/x.png"),
            job="redirect",
        )
        rows = await wait_until_terminal(database_url, 8)
        service.shutdown.set()
    outcome = {row["job_id"]: (row["status"], row["error_code"]) for row in rows}
    blocked = ("failed", "blocked_address")
    assert outcome == {
        "allowed": ("succeeded", None),
        # localhost may resolve to ::1 and 127.0.0.1: then it connects to the allowed one
        "localhost": outcome["localhost"],
        "other-loopback": blocked,
        "v6-loopback": blocked,
        "mapped": blocked,
        "private": blocked,
        "metadata": blocked,
        "redirect": blocked,
    }
    assert origin.gets("x.png") == 0


async def test_name_resolving_to_loopback_is_refused_when_loopback_is_not_allowed(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    port = origin.base_url.rsplit(":", 1)[1]
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, dataclasses.replace(settings, allow_networks=()))
        await enqueue(service, f"http://localhost:{port}/files/name.png")
        (row,) = await wait_until_terminal(database_url, 1)
        service.shutdown.set()
    assert (row["status"], row["error_code"]) == ("failed", "blocked_address")
    assert origin.gets("name.png") == 0
