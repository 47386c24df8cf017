"""The dispatcher: claims due results up to the free worker capacity and hands them over.

Wake-ups come from NOTIFY, from a worker finishing, from the timer of the next due retry and
from the periodic sweep. The wake-up flag is sticky: one that arrives while a claim is running
is not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.domain.results import Claim

log = logging.getLogger(__name__)

# When due rows exist that another process holds locked mid-claim, look again this soon.
LOCKED_ROWS_RETRY_SECONDS = 0.01
DATABASE_RETRY_SECONDS = 1.0
# How long a claim may hold up a cancellation (a shutdown): it runs shielded. A claim answers
# in milliseconds from a live server; past this the rows it may have claimed wait for the reaper.
CLAIM_SHIELD_SECONDS = 2.0


class ClaimStore(Protocol):
    async def claim_due(self, limit: int) -> list[Claim]: ...

    async def seconds_until_next_due(self) -> float | None: ...


class Dispatcher:
    def __init__(
        self,
        store: ClaimStore,
        send: trio.MemorySendChannel[Claim],
        *,
        capacity: int,
        sweep_seconds: float,
        hand_back: Callable[[Claim], Awaitable[object]],
    ) -> None:
        self.store = store
        self.send = send
        self.capacity = capacity
        self.sweep_seconds = sweep_seconds
        self.hand_back = hand_back
        self.busy = 0
        self._wakeup = trio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def attempt_finished(self) -> None:
        self.busy -= 1
        self.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until cancelled. Database outages are logged and waited out, never raised.

        On cancellation, claims not yet handed to a worker are handed back to the queue, and
        the channel is closed so that the workers stop once their current attempt ends.
        """
        task_status.started()
        async with self.send:
            while True:
                self._wakeup = trio.Event()
                try:
                    sleep_for = await self._dispatch_once()
                except DatabaseUnavailable as exc:
                    log.warning("dispatcher: database unavailable", extra={"error": str(exc)})
                    sleep_for = DATABASE_RETRY_SECONDS
                with trio.move_on_after(sleep_for):
                    await self._wakeup.wait()

    async def _dispatch_once(self) -> float:
        """Claim and hand over what is due; answer how long to sleep before looking again."""
        free = self.capacity - self.busy
        if free <= 0:
            return self.sweep_seconds  # a finishing worker wakes us
        # A claim cancelled mid-call may still commit (the server is past COMMIT when the
        # cancel reaches it), leaving rows running that nobody runs until their lease expires.
        # So the call is shielded, within a bound, and what it claimed goes through
        # `_hand_over`, which hands everything back if this task is being cancelled.
        claims: list[Claim] = []
        with trio.CancelScope(shield=True) as shielded:
            shielded.deadline = trio.current_time() + CLAIM_SHIELD_SECONDS
            claims = await self.store.claim_due(free)
        if shielded.cancelled_caught:
            raise DatabaseUnavailable(f"no answer to a claim within {CLAIM_SHIELD_SECONDS} s")
        await self._hand_over(claims)
        if len(claims) == free:
            return 0.0 if self.capacity > self.busy else self.sweep_seconds
        next_due = await self.store.seconds_until_next_due()
        if next_due is None:
            return self.sweep_seconds
        return min(self.sweep_seconds, max(next_due, LOCKED_ROWS_RETRY_SECONDS))

    async def _hand_over(self, claims: list[Claim]) -> None:
        for index, claim in enumerate(claims):
            try:
                self.busy += 1
                await self.send.send(claim)
            except BaseException:
                self.busy -= 1
                with trio.CancelScope(shield=True):
                    for unsent in claims[index:]:
                        await self.hand_back(unsent)
                raise
