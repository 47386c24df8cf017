"""The result resource: its states, its stored form and its JSON rendering."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Terminal states: succeeded, failed, canceled; a terminal result never changes again."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})


@dataclass(frozen=True)
class ResultError:
    code: str
    message: str


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    content_type: str  # what the bytes show (domain/sniff.py)
    sha256: str
    declared_content_type: str | None = None  # what the origin said; null before migration 0005


@dataclass(frozen=True)
class Progress:
    """The bytes an attempt has received, of the total its origin announced (None: chunked)."""

    received_bytes: int
    total_bytes: int | None


@dataclass(frozen=True)
class Callback:
    """A completion callback's state (migration 0009): ``url`` is shown without its query."""

    url: str
    status: str  # pending, delivered, failed
    attempts: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Callback | None:
        if row.get("callback_url") is None:
            return None
        return cls(
            row["callback_url"],
            row["callback_status"],
            row["callback_attempts"],
            row["callback_last_error"],
        )


@dataclass(frozen=True)
class Result:
    id: int
    job_id: str
    url: str
    object_path: str
    status: Status
    attempts: int
    error: ResultError | None
    storage: StoredObject | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    canceled_at: datetime | None
    url_expires_at: datetime | None = None
    progress: Progress | None = None
    callback: Callback | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        # From the millisecond-truncated instants, so it equals the rendered difference.
        return _epoch_ms(self.ended_at) - _epoch_ms(self.started_at)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Result:
        error = (
            ResultError(row["error_code"], row["error_message"] or "")
            if row["error_code"]
            else None
        )
        storage = (
            StoredObject(
                bucket=row["storage_bucket"],
                key=row["storage_key"],
                size=row["storage_size"],
                content_type=row["storage_content_type"],
                sha256=row["storage_sha256"],
                declared_content_type=row["storage_declared_content_type"],
            )
            if row["storage_key"]
            else None
        )
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            url=row["url"],
            object_path=row["object_path"],
            status=Status(row["status"]),
            attempts=row["attempts"],
            error=error,
            storage=storage,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            canceled_at=row["canceled_at"],
            url_expires_at=row["url_expires_at"],
            # queries that answer only new, queued rows (enqueue) do not select it
            progress=(
                Progress(row["progress_received_bytes"], row["progress_total_bytes"])
                if row.get("progress_received_bytes") is not None
                else None
            ),
            callback=Callback.from_row(row),
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_MS


def format_timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds: ``2026-11-28T21:49:07.123Z``."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Claim:
    """A result a worker process has claimed: what one attempt needs to run."""

    id: int
    job_id: str
    url: str  # without the query: safe to log
    source_url: str  # as given: a credential, never logged
    object_path: str
    attempts: int  # this attempt's number (1 for the first)
    url_expires_at: datetime | None = None  # when the source URL stops working

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Claim:
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            url=row["url"],
            source_url=row["source_url"],
            object_path=row["object_path"],
            attempts=row["attempts"],
            url_expires_at=row["url_expires_at"],
        )
