"""Streaming a body into the bucket without holding it whole: one PutObject for a body that
ends within the first part, a multipart upload otherwise.

Memory: at most one part (plus one chunk) is buffered per upload. Cancellation and failure:
a started multipart upload is aborted (shielded, bounded in time), and the abort is checked,
since a part still in flight may land after it; no partial object and no dangling upload stay.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import AsyncIterator

import trio

from bgchallenge.domain.results import StoredObject
from bgchallenge.storage.s3 import Storage

log = logging.getLogger(__name__)

ABORT_SECONDS = 15.0


class _MultipartUpload:
    def __init__(self, storage: Storage, key: str, content_type: str) -> None:
        self.storage = storage
        self.key = key
        self.content_type = content_type
        self.upload_id: str | None = None
        self.parts: list[dict[str, object]] = []

    async def add_part(self, body: io.BytesIO) -> None:
        client = self.storage.client
        if self.upload_id is None:
            created = await self.storage.call(
                client.create_multipart_upload,
                Bucket=self.storage.bucket,
                Key=self.key,
                ContentType=self.content_type,
            )
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        answer = await self.storage.call(
            client.upload_part,
            Bucket=self.storage.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        assert self.upload_id is not None
        await self.storage.call(
            self.storage.client.complete_multipart_upload,
            Bucket=self.storage.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abort(self) -> None:
        """Abort, shielded from the cancellation that may have caused it, within a bound."""
        if self.upload_id is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(ABORT_SECONDS):
            try:
                await self.storage.abort_upload(self.key, self.upload_id)
            except Exception:
                log.warning(
                    "could not abort multipart upload", exc_info=True, extra={"key": self.key}
                )


async def upload_stream(
    storage: Storage,
    key: str,
    content_type: str,
    chunks: AsyncIterator[bytes],
    *,
    part_size: int,
) -> StoredObject:
    """Store the chunks at ``key``; answer what was stored (size and sha256 of the bytes)."""
    digest = hashlib.sha256()
    size = 0
    buffer = io.BytesIO()
    multipart = _MultipartUpload(storage, key, content_type)
    try:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            buffer.write(chunk)
            if buffer.tell() >= part_size:
                await multipart.add_part(_rewound(buffer))
                buffer = io.BytesIO()
        if multipart.upload_id is None:
            await storage.call(
                storage.client.put_object,
                Bucket=storage.bucket,
                Key=key,
                Body=_rewound(buffer),
                ContentType=content_type,
            )
        else:
            if buffer.tell():
                await multipart.add_part(_rewound(buffer))
            await multipart.complete()
    except BaseException:
        await multipart.abort()
        raise
    return StoredObject(
        bucket=storage.bucket,
        key=key,
        size=size,
        content_type=content_type,
        sha256=digest.hexdigest(),
    )


def _rewound(buffer: io.BytesIO) -> io.BytesIO:
    buffer.seek(0)
    return buffer
