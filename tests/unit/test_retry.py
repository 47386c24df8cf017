"""The retry decision and the failure classification: pure functions, no I/O."""

from __future__ import annotations

import pytest

from bgchallenge.domain.failures import (
    EXHAUSTED,
    PERMANENT_CODES,
    TRANSIENT_CODES,
    Failure,
    check_image_headers,
    failure_for_status,
    too_large,
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
