"""Streaming a body into the bucket without holding it whole: one PutObject for a body that
ends within the first part, a multipart upload otherwise.

Memory: a part is gathered in memory up to 2 MiB and in an anonymous temporary file beyond, so
a download holds about the same memory whatever its size. Cancellation and failure:
a started multipart upload is aborted (shielded, bounded in time), and the abort is checked,
since a part still in flight may land after it; no partial object and no dangling upload stay.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, BinaryIO

import trio

from bgchallenge.domain.results import StoredObject
from bgchallenge.storage.s3 import Storage

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import UploadPartOutputTypeDef

log = logging.getLogger(__name__)

ABORT_SECONDS = 15.0
# A body up to this size is held in memory and sent from there in one PutObject: no file, no
# thread hand-off but the upload's own. Past it, the part's bytes go to a temporary file a
# block at a time, so a download holds at most about this much memory whatever its size.
PART_MEMORY_BYTES = 1024 * 1024
SPILL_BLOCK_BYTES = 256 * 1024


class PartBuffer:
    """One part's bytes: in memory up to a limit, then spilled to a temporary file in blocks.

    File operations run in worker threads, never on the Trio thread.
    """

    def __init__(
        self, memory_limit: int = PART_MEMORY_BYTES, spill_block: int = SPILL_BLOCK_BYTES
    ) -> None:
        self.memory_limit = memory_limit
        self.spill_block = spill_block
        self.size = 0
        self._chunks: list[bytes] = []
        self._held = 0
        self._file: BinaryIO | None = None

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._chunks.append(chunk)
        self._held += len(chunk)
        if self._held > (self.memory_limit if self._file is None else self.spill_block):
            await trio.to_thread.run_sync(self._spill)

    def _spill(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by aclose)
        self._file.writelines(self._chunks)
        self._chunks, self._held = [], 0

    async def body(self) -> bytes | BinaryIO:
        """The bytes for an upload: in memory, or the temporary file rewound to its start."""
        if self._file is None:
            joined = b"".join(self._chunks)
            self._chunks = [joined]  # the pieces go now, not after the upload
            return joined

        def rewound() -> BinaryIO:
            self._spill()
            assert self._file is not None
            self._file.seek(0)
            return self._file

        return await trio.to_thread.run_sync(rewound)

    async def aclose(self) -> None:
        self._chunks, self._held = [], 0
        if self._file is not None:
            await trio.to_thread.run_sync(self._file.close)


class _MultipartUpload:
    def __init__(
        self, storage: Storage, key: str, content_type: str, about: Mapping[str, object]
    ) -> None:
        self.storage = storage
        self.key = key
        self.content_type = content_type
        self.about = about
        self.upload_id: str | None = None
        self.parts: list[dict[str, object]] = []

    async def add_part(self, part: PartBuffer) -> None:
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
        upload_id = self.upload_id
        body = await part.body()

        def upload_part() -> UploadPartOutputTypeDef:
            return client.upload_part(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )

        answer = await self.storage.call(upload_part)
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
                    "could not abort multipart upload",
                    exc_info=True,
                    extra={**self.about, "key": self.key},
                )


async def upload_stream(
    storage: Storage,
    key: str,
    content_type: str,
    chunks: AsyncIterator[bytes],
    *,
    part_size: int,
    about: Mapping[str, object] | None = None,
) -> StoredObject:
    """Store the chunks at ``key``; answer what was stored (size and sha256 of the bytes).

    ``about``: the fields naming the result (``id``, ``jobId``) for the lines it logs.
    """
    digest = hashlib.sha256()
    size = 0
    part = PartBuffer()
    multipart = _MultipartUpload(storage, key, content_type, about or {})
    try:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            await part.write(chunk)
            if part.size >= part_size:
                await multipart.add_part(part)
                await part.aclose()
                part = PartBuffer()
        if multipart.upload_id is None:
            body = await part.body()

            def put_object() -> object:
                return storage.client.put_object(
                    Bucket=storage.bucket, Key=key, Body=body, ContentType=content_type
                )

            await storage.call(put_object)
        else:
            if part.size:
                await multipart.add_part(part)
            await multipart.complete()
    except BaseException:
        await multipart.abort()
        raise
    finally:
        with trio.CancelScope(shield=True):
            await part.aclose()
    return StoredObject(
        bucket=storage.bucket,
        key=key,
        size=size,
        content_type=content_type,
        sha256=digest.hexdigest(),
    )
