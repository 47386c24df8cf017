import dataclasses
from datetime import UTC, datetime, timedelta, timezone

from bgchallenge.domain.results import (
    Progress,
    Result,
    Status,
    format_timestamp,
)
from bgchallenge.web.schema import render_result


def test_timestamps_are_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 28, 22, 49, 7, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-28T21:49:07.123Z"
    assert format_timestamp(None) is None


def test_renders_camel_case_and_duration_from_rendered_instants() -> None:
    start = datetime(2026, 1, 1, 0, 0, 0, 999_900, tzinfo=UTC)
    result = Result(
        id=7,
        job_id="j",
        url="https://e.com/a",
        object_path="/a",
        status=Status.SUCCEEDED,
        attempts=1,
        error=None,
        storage=None,
        created_at=start,
        updated_at=start,
        started_at=start,
        ended_at=start + timedelta(microseconds=200),
        canceled_at=None,
    )
    rendered = render_result(result)
    assert rendered["jobId"] == "j" and rendered["objectPath"] == "/a"
    assert rendered["startedAt"] == "2026-01-01T00:00:00.999Z"
    assert rendered["endedAt"] == "2026-01-01T00:00:01.000Z"
    assert rendered["durationMs"] == 1
    assert set(rendered) == {
        "id",
        "jobId",
        "url",
        "objectPath",
        "status",
        "attempts",
        "error",
        "storage",
        "createdAt",
        "updatedAt",
        "startedAt",
        "endedAt",
        "canceledAt",
        "durationMs",
        "urlExpiresAt",
        "progress",
        "callback",
    }
    assert rendered["urlExpiresAt"] is None
    assert rendered["progress"] is None


def test_renders_the_url_expiry_in_utc_with_milliseconds() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    result = Result(
        id=7,
        job_id="j",
        url="https://e.com/a",
        object_path="/a",
        status=Status.QUEUED,
        attempts=0,
        error=None,
        storage=None,
        created_at=start,
        updated_at=start,
        started_at=None,
        ended_at=None,
        canceled_at=None,
        url_expires_at=datetime(
            2026, 12, 1, 11, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1))
        ),
    )
    assert render_result(result)["urlExpiresAt"] == "2026-12-01T10:00:00.250Z"


def test_progress_renders_and_reads_from_its_columns() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    row = {
        "id": 1,
        "job_id": "j",
        "url": "https://e.com/a",
        "object_path": "/a",
        "status": "running",
        "attempts": 1,
        "error_code": None,
        "error_message": None,
        "storage_key": None,
        "created_at": moment,
        "updated_at": moment,
        "started_at": moment,
        "ended_at": None,
        "canceled_at": None,
        "url_expires_at": None,
        "progress_received_bytes": 10,
        "progress_total_bytes": None,
    }
    result = Result.from_row(row)
    assert result.progress == Progress(10, None)
    assert render_result(result)["progress"] == {"receivedBytes": 10, "totalBytes": None}
    with_total = dataclasses.replace(result, progress=Progress(10, 20))
    assert render_result(with_total)["progress"] == {"receivedBytes": 10, "totalBytes": 20}
    # no progress columns (an enqueue answers only new rows) or no byte yet: null
    assert Result.from_row({**row, "progress_received_bytes": None}).progress is None
    del row["progress_received_bytes"], row["progress_total_bytes"]
    assert Result.from_row(row).progress is None


def test_terminal_states() -> None:
    assert {s for s in Status if s.terminal} == {"succeeded", "failed", "canceled"}
