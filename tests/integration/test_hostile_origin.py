"""Origins that trickle, compress, or are not there: real servers and sockets on loopback.

A trickling origin holds a worker for a bounded time only; a compressed body is refused before
a byte is stored; and what a client reads in `error.message` tells it nothing about the
service's network (docs/http.md, "Failure codes" and "Network safety").
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.origin import Origin
from tests.support.results import Bucket, wait_until_terminal

MIB = 1024 * 1024


async def enqueue(service: RunningService, url: str, job: str = "job") -> int:
    response = await service.client.post("/results/enqueue", json={"jobId": job, "url": url})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    yield port


@contextmanager
def blackhole() -> Iterator[int]:
    """A loopback port whose connections time out: a listener with a full accept queue.

    Linux drops the SYN of a connection its full queue has no room for, as a firewall that
    drops packets would, so the connecting side waits until its own timeout.
    """
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port


async def test_a_trickling_origin_is_stopped_as_too_slow(
    nursery: trio.Nursery,
    settings: Settings,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
) -> None:
    # 10 bytes a second, each within the read timeout: only the rate floor can stop it
    slow = dataclasses.replace(settings, read_timeout=1.0, min_rate=1000, retry_delays=(0.05,))
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, slow)
        await enqueue(service, origin.url("drip.png", size=100_000, trickle=0.1))
        (row,) = await wait_until_terminal(database_url, 1)
        service.shutdown.set()
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "exhausted", 2)
    assert "origin_unavailable: too slow" in row["error_message"]
    assert origin.gets("drip.png") == 2  # transient: retried
    state = Bucket(s3_endpoint, bucket)
    assert state.object_keys() == [] and state.uploads() == []


async def test_an_attempt_past_its_deadline_is_stopped_and_its_upload_aborted(
    nursery: trio.Nursery,
    settings: Settings,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
) -> None:
    # Fast enough for the rate floor, but the pauses alone add up to 3.2 s; the first 5 MiB
    # part is usually uploaded before the deadline, so a multipart upload is open when it hits.
    bounded = dataclasses.replace(settings, attempt_seconds=2.5, retry_delays=(0.05,))
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, bounded)
        await enqueue(service, origin.url("long.png", size=20 * MIB, slow=0.01))
        (row,) = await wait_until_terminal(database_url, 1)
        service.shutdown.set()
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "exhausted", 2)
    assert "origin_unavailable: too slow" in row["error_message"]
    assert "2.5 s" in row["error_message"]
    assert origin.gets("long.png") == 2
    state = Bucket(s3_endpoint, bucket)
    assert state.object_keys() == [] and state.uploads() == []


async def test_a_compressed_body_is_not_an_image_and_nothing_is_stored(
    service: RunningService,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
) -> None:
    # 32 MiB of zeros in ~32 KiB: past the 20 MiB limit once decoded, under it as sent
    with trio.fail_after(IO_GUARD_SECONDS):
        await enqueue(service, origin.url("bomb.png", size=32 * MIB, gzip=1), job="head")
        await enqueue(service, origin.url("bomb2.png", size=32 * MIB, gzip=1, head=405), job="get")
        rows = await wait_until_terminal(database_url, 2)
    outcome = {row["job_id"]: (row["status"], row["error_code"], row["attempts"]) for row in rows}
    assert outcome == {
        "head": ("failed", "not_an_image", 1),
        "get": ("failed", "not_an_image", 1),
    }
    assert all("Content-Encoding: gzip" in row["error_message"] for row in rows)
    assert origin.gets("bomb.png") == 0  # refused on HEAD
    assert origin.gets("bomb2.png") == 1  # refused on the GET headers
    state = Bucket(s3_endpoint, bucket)
    assert state.object_keys() == [] and state.uploads() == []


async def test_refused_and_timed_out_connections_read_the_same(
    nursery: trio.Nursery, settings: Settings, database_url: str
) -> None:
    quick = dataclasses.replace(settings, connect_timeout=0.5, retry_delays=())
    with closed_port() as refused, blackhole() as dropped, trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, quick)
        await enqueue(service, f"http://127.0.0.1:{refused}/a.png", job="refused")
        await enqueue(service, f"http://127.0.0.1:{dropped}/a.png", job="dropped")
        rows = await wait_until_terminal(database_url, 2)
        service.shutdown.set()
    outcome = {row["job_id"]: (row["error_code"], row["error_message"]) for row in rows}
    assert outcome["refused"] == outcome["dropped"], outcome
    assert outcome["refused"][0] == "exhausted"
    assert "could not connect to the origin" in outcome["refused"][1]


async def test_a_blocked_name_does_not_reveal_its_addresses(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    port = origin.base_url.rsplit(":", 1)[1]
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, dataclasses.replace(settings, allow_networks=()))
        result_id = await enqueue(service, f"http://localhost:{port}/files/name.png")
        await wait_until_terminal(database_url, 1)
        error = (await service.client.get(f"/results/{result_id}")).json()["error"]
        service.shutdown.set()
    assert error["code"] == "blocked_address"
    assert "127.0.0.1" not in error["message"] and "::1" not in error["message"]
    assert error["message"] == "the host's address is not allowed"
