"""Every log line about a result carries its `id` and `jobId`, also on the unhappy paths."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.service import create_storage
from bgchallenge.settings import Settings
from bgchallenge.storage.s3 import Storage, StorageUnavailable
from bgchallenge.storage.upload import upload_stream
from bgchallenge.work import workers
from tests.conftest import IO_GUARD_SECONDS

MIB = 1024 * 1024
ABOUT = {"id": 7, "jobId": "job-7"}


class RefusingAborts(Storage):
    """The real bucket, except that S3 refuses every abort (as a failing S3 may)."""

    async def abort_upload(self, key: str, upload_id: str) -> None:
        raise StorageUnavailable("S3 InternalError (500)")


async def test_the_warning_about_an_abort_that_failed_names_the_result(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    real = create_storage(settings)
    storage = RefusingAborts(real.client, real.bucket, 2)

    async def chunks() -> AsyncIterator[bytes]:
        yield bytes(6 * MIB)  # one part goes up, then the download fails
        raise OSError("connection reset")

    with trio.fail_after(IO_GUARD_SECONDS), pytest.raises(OSError):
        await upload_stream(
            storage, "results/7/a.png", "image/png", chunks(), part_size=5 * MIB, about=ABOUT
        )
    (warning,) = [r for r in caplog.records if r.getMessage() == "could not abort multipart upload"]
    assert (warning.id, warning.jobId) == (7, "job-7")  # type: ignore[attr-defined]
    await real.clean("results/7/a.png")


async def test_the_warning_about_a_database_outage_names_the_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DatabaseUnavailable("connection refused")
        return "recorded"

    caplog.set_level(logging.WARNING, logger="bgchallenge")
    with trio.fail_after(IO_GUARD_SECONDS):
        assert await workers._persistently(flaky, 5.0, dict(ABOUT)) == "recorded"
    (warning,) = [r for r in caplog.records if r.getMessage().startswith("database unavailable")]
    assert (warning.id, warning.jobId) == (7, "job-7")  # type: ignore[attr-defined]
