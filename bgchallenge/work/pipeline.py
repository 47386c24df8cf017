"""One attempt's work: validate at the origin, stream into the bucket. No database here."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

import trio

from bgchallenge.domain.failures import Failure, not_an_image
from bgchallenge.domain.keys import object_key
from bgchallenge.domain.results import Claim, StoredObject
from bgchallenge.domain.sniff import SNIFF_BYTES, sniff_image_type
from bgchallenge.storage.s3 import Storage, StorageRejected, StorageUnavailable
from bgchallenge.storage.upload import upload_stream
from bgchallenge.work.fetch import Fetcher


async def copy_to_bucket(
    claim: Claim,
    fetcher: Fetcher,
    storage: Storage,
    *,
    part_size: int,
    attempt_seconds: float = math.inf,
    observe_download: Callable[[float], None] = lambda seconds: None,
    on_received: Callable[[int, int | None], None] = lambda size, total: None,
) -> StoredObject:
    """Copy the claimed URL into the bucket within ``attempt_seconds``; raise `Failure` saying
    what went wrong (``origin_unavailable``, transient, when the time runs out).

    Cancellation: the download stops, the multipart upload (if any) is aborted, and Cancelled
    propagates.
    """
    with trio.move_on_after(attempt_seconds):
        # the deadline cancels like any cancellation: the upload is aborted on the way out
        return await _copy(
            claim,
            fetcher,
            storage,
            part_size=part_size,
            observe_download=observe_download,
            on_received=on_received,
        )
    raise Failure(
        "origin_unavailable", f"too slow: the attempt took longer than {attempt_seconds:g} s"
    )


async def _copy(
    claim: Claim,
    fetcher: Fetcher,
    storage: Storage,
    *,
    part_size: int,
    observe_download: Callable[[float], None],
    on_received: Callable[[int, int | None], None],
) -> StoredObject:
    key = object_key(claim.id, claim.object_path)
    started = trio.current_time()

    async def timed(chunks: AsyncIterator[bytes], total: int | None) -> AsyncGenerator[bytes, None]:
        async for chunk in chunks:
            on_received(len(chunk), total)
            yield chunk
        observe_download(trio.current_time() - started)

    try:
        # Before HEAD, so that whatever the origin answers now, an upload an earlier attempt's
        # process left open when it died is gone (a failure also cleans up, after recording).
        if claim.attempts > 1:
            await storage.abort_uploads_of(key)
    except (StorageUnavailable, StorageRejected) as exc:
        raise Failure("storage_unavailable", str(exc)) from exc
    async with (
        fetcher.open(claim.source_url, claim.url_expires_at) as download,
        aclosing(timed(download.chunks, download.length)) as chunks,
    ):
        # Before the upload starts: a body that is not an image leaves nothing in the bucket.
        prefix = await read_prefix(chunks, SNIFF_BYTES)
        detected = sniff_image_type(prefix[:SNIFF_BYTES])
        if detected is None:
            raise not_an_image(prefix, download.content_type)
        try:
            async with aclosing(_prepended(prefix, chunks)) as body:
                stored = await upload_stream(
                    storage,
                    key,
                    detected,
                    body,
                    part_size=part_size,
                    about={"id": claim.id, "jobId": claim.job_id},
                )
        except (StorageUnavailable, StorageRejected) as exc:
            raise Failure("storage_unavailable", str(exc)) from exc
    return dataclasses.replace(stored, declared_content_type=download.content_type)


async def read_prefix(chunks: AsyncIterator[bytes], size: int) -> bytes:
    """The body's first ``size`` bytes or, when it is shorter, the whole body: the chunk that
    crosses the bound is kept whole (it is no larger than the fetcher's chunks)."""
    prefix = bytearray()
    while len(prefix) < size:
        chunk = await anext(chunks, None)
        if chunk is None:
            break
        prefix += chunk
    return bytes(prefix)


async def _prepended(prefix: bytes, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    if prefix:
        yield prefix
    async for chunk in chunks:
        yield chunk
