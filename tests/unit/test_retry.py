"""The retry decision and the failure classification: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bgchallenge.domain.failures import (
    EXHAUSTED,
    PERMANENT_CODES,
    TRANSIENT_CODES,
    Failure,
    check_image_headers,
    failure_for_status,
    too_large,
    url_expired,
)
from bgchallenge.domain.retry import GiveUp, RetryLater, decide, max_attempts

DELAYS = (1.0, 4.0, 8.0)


def test_four_attempts_in_all() -> None:
    assert max_attempts(DELAYS) == 4
    assert max_attempts(()) == 1


@pytest.mark.parametrize(("attempts", "delay"), [(1, 1.0), (2, 4.0), (3, 8.0)])
@pytest.mark.parametrize("code", sorted(TRANSIENT_CODES))
def test_transient_failures_retry_on_the_schedule(code: str, attempts: int, delay: float) -> None:
    assert decide(Failure(code, "it broke"), attempts, DELAYS) == RetryLater(delay)


def test_the_fourth_transient_failure_gives_up_as_exhausted() -> None:
    last = Failure("origin_unavailable", "the origin answered 503 to GET")
    decision = decide(last, 4, DELAYS)
    assert isinstance(decision, GiveUp)
    assert decision.code == EXHAUSTED
    assert "4 attempts" in decision.message
    assert "origin_unavailable" in decision.message
    assert "the origin answered 503 to GET" in decision.message


def test_the_whole_schedule() -> None:
    failure = Failure("storage_unavailable", "bucket timed out")
    decisions = [decide(failure, attempt, DELAYS) for attempt in range(1, 5)]
    assert decisions[:3] == [RetryLater(1.0), RetryLater(4.0), RetryLater(8.0)]
    assert isinstance(decisions[3], GiveUp) and decisions[3].code == EXHAUSTED


@pytest.mark.parametrize("attempts", [1, 2, 3, 4])
@pytest.mark.parametrize("code", sorted(PERMANENT_CODES))
def test_permanent_failures_give_up_at_once_with_their_own_code(code: str, attempts: int) -> None:
    decision = decide(Failure(code, "no luck"), attempts, DELAYS)
    assert decision == GiveUp(code, "no luck")


def test_no_retries_configured() -> None:
    decision = decide(Failure("origin_unavailable", "down"), 1, ())
    assert isinstance(decision, GiveUp) and decision.code == EXHAUSTED


def test_codes_are_either_permanent_or_transient() -> None:
    assert not PERMANENT_CODES & TRANSIENT_CODES
    assert EXHAUSTED not in PERMANENT_CODES | TRANSIENT_CODES
    assert all(Failure(code, "").transient for code in TRANSIENT_CODES)
    assert not any(Failure(code, "").transient for code in PERMANENT_CODES)


def test_failure_text() -> None:
    failure = Failure("not_found", "the origin answered 404 to HEAD")
    assert str(failure) == "not_found: the origin answered 404 to HEAD"
    assert failure.code == "not_found" and failure.message == "the origin answered 404 to HEAD"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "not_found"),
        (410, "not_found"),
        (401, "forbidden"),
        (403, "forbidden"),
        (429, "origin_unavailable"),
        (500, "origin_unavailable"),
        (503, "origin_unavailable"),
        (204, "bad_status"),
        (400, "bad_status"),
    ],
)
def test_failure_for_status(status: int, code: str) -> None:
    failure = failure_for_status(status, "HEAD")
    assert failure is not None
    assert failure.code == code
    assert str(status) in failure.message and "HEAD" in failure.message


def test_200_is_no_failure() -> None:
    assert failure_for_status(200, "GET") is None


def test_status_transience() -> None:
    for status in (429, 500, 503):
        failure = failure_for_status(status, "GET")
        assert failure is not None and failure.transient
    for status in (204, 400, 401, 403, 404, 410):
        failure = failure_for_status(status, "GET")
        assert failure is not None and not failure.transient


LIMIT = 1000


@pytest.mark.parametrize(
    ("content_type", "content_length"),
    [
        ("image/png", "10"),
        ("image/png; charset=x", "10"),
        ("IMAGE/JPEG", None),
        (" image/webp ", None),
        ("image/png", str(LIMIT)),  # exactly the limit
        ("image/png", "not-a-number"),  # garbled: ignored, the bytes are counted instead
        ("image/png", ""),
    ],
)
def test_acceptable_image_headers(content_type: str, content_length: str | None) -> None:
    assert check_image_headers(content_type, content_length, LIMIT) is None


@pytest.mark.parametrize(
    "content_type", ["text/html", "text/html; charset=utf-8", "image/", "image", "", None]
)
def test_not_an_image(content_type: str | None) -> None:
    failure = check_image_headers(content_type, "10", LIMIT)
    assert failure is not None
    assert failure.code == "not_an_image"
    assert not failure.transient


def test_a_missing_type_is_named_in_the_message() -> None:
    failure = check_image_headers(None, None, LIMIT)
    assert failure is not None and "missing" in failure.message


def test_a_length_over_the_limit_is_too_large() -> None:
    failure = check_image_headers("image/png", str(LIMIT + 1), LIMIT)
    assert failure is not None
    assert failure.code == "too_large"
    assert not failure.transient
    assert str(LIMIT + 1) in failure.message and str(LIMIT) in failure.message


def test_the_type_is_checked_before_the_length() -> None:
    failure = check_image_headers("text/html", str(LIMIT + 1), LIMIT)
    assert failure is not None and failure.code == "not_an_image"


def test_too_large_while_streaming() -> None:
    failure = too_large(LIMIT + 5, LIMIT)
    assert failure.code == "too_large" and str(LIMIT + 5) in failure.message


EXPIRES = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds_left", "expected"),
    [
        (1.5, GiveUp),  # the retry (in 4 s) would be due after the expiry
        (4.0, GiveUp),  # at the expiry itself: the URL no longer works then
        (4.001, RetryLater),
        (-60.0, GiveUp),
    ],
)
def test_a_retry_due_at_or_after_the_url_expiry_fails_url_expired(
    seconds_left: float, expected: type
) -> None:
    now = EXPIRES - timedelta(seconds=seconds_left)
    failure = Failure("origin_unavailable", "the origin answered 503 to GET")
    decision = decide(failure, 2, DELAYS, expires_at=EXPIRES, now=now)
    assert isinstance(decision, expected)
    if isinstance(decision, GiveUp):
        assert decision.code == "url_expired"
        assert "2026-12-01T10:00:00Z" in decision.message
        assert "origin_unavailable" in decision.message
    else:
        assert decision == RetryLater(4.0)


def test_no_expiry_or_a_permanent_failure_is_decided_as_before() -> None:
    now = EXPIRES + timedelta(hours=1)
    transient = Failure("origin_unavailable", "down")
    assert decide(transient, 1, DELAYS, expires_at=None, now=now) == RetryLater(1.0)
    assert decide(Failure("not_found", "gone"), 1, DELAYS, expires_at=EXPIRES, now=now) == GiveUp(
        "not_found", "gone"
    )
    assert decide(transient, 4, DELAYS, expires_at=EXPIRES, now=now).code == EXHAUSTED  # type: ignore[union-attr]


def test_url_expired_is_permanent() -> None:
    assert "url_expired" in PERMANENT_CODES
    assert not url_expired(EXPIRES).transient


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_after_the_expiry_is_url_expired(status: int) -> None:
    failure = failure_for_status(status, "GET", EXPIRES)
    assert failure is not None and failure.code == "url_expired"
    assert str(status) in failure.message and "2026-12-01T10:00:00Z" in failure.message
    before = failure_for_status(status, "GET", None)
    assert before is not None and before.code == "forbidden"


@pytest.mark.parametrize("status", [404, 500, 400])
def test_other_statuses_after_the_expiry_keep_their_code(status: int) -> None:
    after, before = failure_for_status(status, "GET", EXPIRES), failure_for_status(status, "GET")
    assert after is not None and before is not None
    assert (after.code, after.message) == (before.code, before.message)
