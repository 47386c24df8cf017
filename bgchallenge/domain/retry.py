"""The retry decision: a pure function of the failure and the attempts made."""

from __future__ import annotations

from dataclasses import dataclass

from bgchallenge.domain.failures import EXHAUSTED, Failure


@dataclass(frozen=True)
class RetryLater:
    delay_seconds: float


@dataclass(frozen=True)
class GiveUp:
    code: str
    message: str


def decide(failure: Failure, attempts: int, delays: tuple[float, ...]) -> RetryLater | GiveUp:
    """After attempt number ``attempts`` failed: retry after the next delay, or give up.

    ``delays`` has one entry per retry, so there are ``len(delays) + 1`` attempts in all.
    """
    if not failure.transient:
        return GiveUp(failure.code, failure.message)
    if attempts > len(delays):
        return GiveUp(EXHAUSTED, f"{attempts} attempts failed; last: {failure}")
    return RetryLater(delays[max(attempts, 1) - 1])


def max_attempts(delays: tuple[float, ...]) -> int:
    return len(delays) + 1
