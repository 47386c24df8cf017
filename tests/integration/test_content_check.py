"""The content check end to end: real files from the real origin, all declared `image/png`."""

from __future__ import annotations

import hashlib

import pytest
import trio

from tests.conftest import IO_GUARD_SECONDS, RunningService
from tests.support.images import samples
from tests.support.origin import Origin
from tests.support.results import Bucket, wait_until_terminal

MIB = 1024 * 1024


@pytest.fixture
def bucket_state(s3_endpoint: str, bucket: str) -> Bucket:
    return Bucket(s3_endpoint, bucket)


async def enqueue(service: RunningService, url: str) -> int:
    response = await service.client.post("/results/enqueue", json={"jobId": "j", "url": url})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def test_each_image_type_is_stored_with_the_type_its_bytes_show(
    service: RunningService, origin: Origin, database_url: str, bucket_state: Bucket
) -> None:
    files = samples()
    ids: dict[str, int] = {}
    with trio.fail_after(IO_GUARD_SECONDS):
        for name, (data, _) in files.items():
            origin.put(f"{name}.png", data)
            ids[name] = await enqueue(service, origin.url(f"{name}.png"))  # image/png, always
        await wait_until_terminal(database_url, len(files), within=20)
        details = {
            name: (await service.client.get(f"/results/{i}")).json() for name, i in ids.items()
        }
    for name, (data, media_type) in files.items():
        detail = details[name]
        assert (detail["status"], detail["error"]) == ("succeeded", None), (name, detail)
        storage = detail["storage"]
        assert storage["contentType"] == media_type, name
        assert storage["declaredContentType"] == "image/png", name
        assert storage["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert bucket_state.object(storage["key"]) == (data, media_type), name
    assert bucket_state.uploads() == []


@pytest.mark.parametrize("size", [0, 1000, 6 * MIB], ids=["small", "empty-tail", "multipart"])
async def test_html_declared_png_fails_with_nothing_stored(
    service: RunningService,
    origin: Origin,
    database_url: str,
    bucket_state: Bucket,
    size: int,
) -> None:
    page = b"<!DOCTYPE html>\n<html><body><svg></svg></body></html>\n" + b" " * size
    origin.put("page.png", page)
    with trio.fail_after(IO_GUARD_SECONDS):
        result_id = await enqueue(service, origin.url("page.png"))
        (row,) = await wait_until_terminal(database_url, 1)
        detail = (await service.client.get(f"/results/{result_id}")).json()
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "not_an_image", 1)
    assert detail["storage"] is None and "declared image/png" in detail["error"]["message"]
    assert origin.gets("page.png") == 1  # one GET, and permanent: never tried again
    assert bucket_state.object_keys() == [] and bucket_state.uploads() == []


async def test_a_body_trickled_byte_by_byte_is_checked_whole(
    service: RunningService, origin: Origin, database_url: str, bucket_state: Bucket
) -> None:
    """The prefix gathers many chunks; a body shorter than the prefix's bound is decided on
    when it ends."""
    svg = (
        b'<?xml version="1.0"?>\n<!-- drawn by hand -->\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    )
    origin.put("slow.svg", svg)
    with trio.fail_after(IO_GUARD_SECONDS):
        result_id = await enqueue(
            service, origin.url("slow.svg", trickle=0.001, type="image/x-svg")
        )
        (row,) = await wait_until_terminal(database_url, 1)
        detail = (await service.client.get(f"/results/{result_id}")).json()
    assert row["status"] == "succeeded", row
    assert detail["storage"]["contentType"] == "image/svg+xml"
    assert detail["storage"]["declaredContentType"] == "image/x-svg"
    assert bucket_state.object(detail["storage"]["key"]) == (svg, "image/svg+xml")
