"""A broker transport's messages: their delays, and what claiming a result by id decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bgchallenge.domain.messages import LOCKED_RETRY_SECONDS, ClaimAnswer, Message, Verdict

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("due_in", "delay"),
    [(-5.0, 0), (0.0, 0), (0.001, 1), (3.99, 4), (4.0, 4), (8.2, 9)],
)
def test_a_message_is_held_back_until_its_result_is_due_never_less(
    due_in: float, delay: int
) -> None:
    message = Message(outbox_id=1, result_id=7, not_before=NOW + timedelta(seconds=due_in))
    assert message.delay_seconds(NOW) == delay


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "result_id": 7,
        "claimed": False,
        "locked": False,
        "status": "queued",
        "cancel_requested": False,
        "due_in": 0.0,
        "lease_left": 0.0,
        "job_id": None,
        "url": None,
        "source_url": None,
        "object_path": None,
        "attempts": None,
        "url_expires_at": None,
    }
    return base | changes


def test_a_claimed_result_runs() -> None:
    answer = ClaimAnswer.from_row(
        row(
            claimed=True,
            status="queued",
            job_id="j",
            url="https://e.com/a.png",
            source_url="https://e.com/a.png?sig=1",
            object_path="/a.png",
            attempts=2,
        )
    )
    assert answer.verdict is Verdict.RUN and answer.claim is not None
    assert (answer.claim.id, answer.claim.attempts) == (7, 2)


@pytest.mark.parametrize(
    ("changes", "verdict", "later"),
    [
        ({"locked": True, "status": None}, Verdict.LATER, LOCKED_RETRY_SECONDS),
        ({"status": "queued", "due_in": 3.5}, Verdict.LATER, 3.5),  # came early
        ({"status": "running", "lease_left": 12.0}, Verdict.LATER, 12.0),  # a live attempt
        ({"status": "succeeded"}, Verdict.DROP, 0.0),
        ({"status": "failed"}, Verdict.DROP, 0.0),
        ({"status": "canceled"}, Verdict.DROP, 0.0),
        ({"status": "queued", "cancel_requested": True}, Verdict.DROP, 0.0),
        ({"status": None}, Verdict.DROP, 0.0),  # no such result
    ],
)
def test_what_a_message_not_run_becomes(
    changes: dict[str, Any], verdict: Verdict, later: float
) -> None:
    answer = ClaimAnswer.from_row(row(**changes))
    assert (answer.verdict, answer.later_seconds, answer.claim) == (verdict, later, None)
