"""Completion callbacks: what one delivery attempt is, and what follows a failed one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Each attempt's wait for an answer (10 s, as docs/http.md says).
CALLBACK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Delivery:
    """A claimed delivery attempt: fenced on (the claimer, ``attempt``)."""

    result_id: int
    job_id: str
    target: str  # the callback URL as given: its query may be a credential, never logged
    message_id: str  # the webhook-id: the same on every attempt
    attempt: int  # 1 for the first

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Delivery:
        return cls(
            row["id"],
            row["job_id"],
            row["callback_target"],
            row["callback_id"],
            row["callback_attempts"],
        )


def max_callback_attempts(delays: tuple[float, ...]) -> int:
    return len(delays) + 1


def retry_delay(attempt: int, delays: tuple[float, ...]) -> float | None:
    """The wait before the next attempt after attempt ``attempt`` failed; None: give up."""
    return delays[attempt - 1] if attempt <= len(delays) else None


def answer_error(status_code: int) -> str | None:
    """None for a delivery (any 2xx), else the error recorded for the attempt."""
    if 200 <= status_code < 300:
        return None
    return f"the callback URL answered {status_code}"
