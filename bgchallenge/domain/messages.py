"""What a broker transport's messages say, and what claiming a result by id answers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from bgchallenge.domain.results import Claim


@dataclass(frozen=True)
class Message:
    """One message intent, a row of the outbox (migration 0010): run result ``result_id`` no
    sooner than ``not_before`` (its ``due_at`` when the row was written)."""

    outbox_id: int
    result_id: int
    not_before: datetime  # aware

    def delay_seconds(self, now: datetime) -> int:
        """How long a broker should hold the message back from ``now``, in whole seconds
        rounded up: a message is never delivered before its result is due."""
        return max(0, math.ceil((self.not_before - now).total_seconds()))


# A message whose result another transaction held locked comes back this soon.
LOCKED_RETRY_SECONDS = 1.0


class Verdict(Enum):
    """What to do with a message, once its result was claimed by id (or not)."""

    RUN = "run"  # claimed: hand it to a worker; finish the message once the outcome is recorded
    LATER = "later"  # not due yet, or held by a live attempt: release it until then
    DROP = "drop"  # ended, canceled, or gone: finish the message and ignore it


@dataclass(frozen=True)
class ClaimAnswer:
    result_id: int
    verdict: Verdict
    claim: Claim | None = None  # when RUN
    later_seconds: float = 0.0  # when LATER: how long until it may be due again

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ClaimAnswer:
        result_id = int(row["result_id"])
        if row["claimed"]:
            return cls(result_id, Verdict.RUN, Claim.from_row({**row, "id": result_id}))
        if row["locked"]:  # another transaction holds it: an outcome, a cancel, a claim
            return cls(result_id, Verdict.LATER, later_seconds=LOCKED_RETRY_SECONDS)
        if row["status"] == "queued" and not row["cancel_requested"]:
            return cls(result_id, Verdict.LATER, later_seconds=float(row["due_in"]))
        if row["status"] == "running":
            # The lease of a live attempt (or one expired, that the reaper is about to queue
            # again): look again once it would have expired.
            return cls(result_id, Verdict.LATER, later_seconds=float(row["lease_left"]))
        return cls(result_id, Verdict.DROP)
