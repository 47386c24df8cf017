"""A shared boto3 S3 client, every call run in a worker thread under a capacity limiter.

Cancellation: a call already running in its thread is never interrupted (boto3 cannot be);
the Trio side waits for it unless the method says it abandons the thread. Errors are mapped
to `StorageUnavailable` (transient: the server could not be reached or answered 5xx) and
`StorageRejected` (the server refused the request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import trio
from botocore.exceptions import ClientError

from bgchallenge.boto import call_in_thread, client_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

HEALTH_THREADS = 1


class StorageUnavailable(Exception):
    """S3 could not be reached, timed out, or answered with a server error."""


class StorageRejected(Exception):
    """S3 answered with a client error (4xx) that retrying will not fix."""


def _map_error(exc: Exception) -> Exception:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "?")
        message = f"S3 {code} ({status})"
        return (
            StorageUnavailable(message)
            if status >= 500 or status == 0
            else StorageRejected(message)
        )
    return StorageUnavailable(f"S3 unreachable: {type(exc).__name__}: {exc}")


class Storage:
    """The bucket the service writes into."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        threads: int,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.limiter = trio.CapacityLimiter(threads)
        # Health checks are unauthenticated: a flood of them, or a check abandoned while boto3
        # still waits, must never hold a thread the uploads need. One is enough: /health
        # shares one check among concurrent requests (bgchallenge.web.recent).
        self.health_limiter = trio.CapacityLimiter(HEALTH_THREADS)
        self.observe = observe  # (operation, seconds) of every call that returned

    @classmethod
    def create(
        cls,
        *,
        bucket: str,
        endpoint_url: str | None,
        threads: int,
        connect_timeout: float,
        read_timeout: float,
        observe: Callable[[str, float], None] | None = None,
    ) -> Storage:
        """Build the client here, in the Trio thread: client creation is not thread-safe."""
        config = client_config(
            threads=threads,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, bucket, threads, observe)

    async def call(
        self,
        function: Callable[..., T],
        /,
        *,
        abandon_on_cancel: bool = False,
        limiter: trio.CapacityLimiter | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``function(**kwargs)`` in a thread (under ``limiter``, by default the uploads');
        map botocore's errors to ours.

        The function's name names the operation in the timings (``observe``).
        """
        started = trio.current_time()
        result = await call_in_thread(
            function,
            kwargs,
            limiter=self.limiter if limiter is None else limiter,
            abandon_on_cancel=abandon_on_cancel,
            map_error=_map_error,
        )
        if self.observe is not None:
            self.observe(function.__name__, trio.current_time() - started)
        return result

    async def check_bucket(self) -> None:
        """Raise unless the bucket answers; the thread is abandoned if the caller gives up
        (it keeps its health-check slot until boto3 gives up, never an upload's)."""
        await self.call(
            self.client.head_bucket,
            Bucket=self.bucket,
            abandon_on_cancel=True,
            limiter=self.health_limiter,
        )

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for embedded and test S3 servers)."""
        try:
            await self.check_bucket()
        except StorageRejected:
            await self.call(self.client.create_bucket, Bucket=self.bucket)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload, then make sure no part landed after the abort."""
        for _ in range(3):
            await self.call(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id
            )
            if not await self._upload_exists(key, upload_id):
                return
        raise StorageUnavailable(f"multipart upload {upload_id} of {key} survived its abort")

    async def delete(self, key: str) -> None:
        """Delete the object at ``key``, if any (S3 answers the same when there is none)."""
        await self.call(self.client.delete_object, Bucket=self.bucket, Key=key)

    async def abort_uploads_of(self, key: str) -> int:
        """Abort every unfinished multipart upload of ``key`` (left by a process that died)."""
        listing = await self.call(
            self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=key
        )
        stale = [u["UploadId"] for u in listing.get("Uploads", []) if u.get("Key") == key]
        for upload_id in stale:
            await self.abort_upload(key, upload_id)
        return len(stale)

    async def clean(self, key: str) -> None:
        """Leave nothing at ``key``: every unfinished upload aborted, the object deleted.

        Idempotent, so that a clean-up interrupted by a crash can simply be run again. The
        uploads go first: one completing later would bring the object back.
        """
        await self.abort_uploads_of(key)
        await self.delete(key)

    async def _upload_exists(self, key: str, upload_id: str) -> bool:
        listing = await self.call(
            self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=key
        )
        return any(u.get("UploadId") == upload_id for u in listing.get("Uploads", []))
