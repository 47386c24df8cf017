from datetime import UTC, datetime, timedelta, timezone

from bgchallenge.domain.results import Result, Status, format_timestamp, render_result


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
    }
    assert rendered["urlExpiresAt"] is None


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


def test_terminal_states() -> None:
    assert {s for s in Status if s.terminal} == {"succeeded", "failed", "canceled"}
