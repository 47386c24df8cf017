"""The retry decision: a pure function of the failure and the attempts made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bgchallenge.domain.failures import EXHAUSTED, Failure


@dataclass(frozen=True)
class RetryLater:
    delay_seconds: float


@dataclass(frozen=True)
class GiveUp:
    code: str
    message: str


def decide(
    failure: Failure,
    attempts: int,
    delays: tuple[float, ...],
    *,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> RetryLater | GiveUp:
    """After attempt number ``attempts`` failed: retry after the next delay, or give up.

    ``delays`` has one entry per retry, so there are ``len(delays) + 1`` attempts in all. A
    retry that would be due at or after the URL's expiry (``expires_at``, seen at ``now``)
    could only fail: the result gives up with ``url_expired`` instead.
    """
    if not failure.transient:
        return GiveUp(failure.code, failure.message)
    if attempts > len(delays):
        return GiveUp(EXHAUSTED, f"{attempts} attempts failed; last: {failure}")
    delay = delays[max(attempts, 1) - 1]
    if expires_at is not None and now is not None and now + timedelta(seconds=delay) >= expires_at:
        shown = expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return GiveUp(
            "url_expired",
            f"the presigned URL expires at {shown}, before the next retry; last: {failure}",
        )
    return RetryLater(delay)


def max_attempts(delays: tuple[float, ...]) -> int:
    return len(delays) + 1
