"""`WorkQueue` over a `Broker`: receive messages, claim their results by id, hand them over.

One receiving loop per worker process asks the broker for at most the free capacity (and the
broker's batch size), claims the results those messages name in one fenced statement
(``claim_results``, the same update as the ``postgres`` claim), and hands each claim to a
worker. A message whose result is not due any more (ended, canceled, gone) is finished and
ignored; one that came before its result is due, or whose result a live attempt holds, is
released to come back then: neither run twice nor dropped. The message of a running attempt
is kept invisible on the lease's cadence and finished once the outcome is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.db.repository import Attempts
from bgchallenge.domain.messages import Verdict
from bgchallenge.domain.results import Claim
from bgchallenge.work.dispatcher import CLAIM_SHIELD_SECONDS, DATABASE_RETRY_SECONDS
from bgchallenge.work.queue import Broker, Delivery, QueueUnavailable

log = logging.getLogger(__name__)

BROKER_RETRY_SECONDS = 1.0
# Bounds a broker call made while the attempt's task is being cancelled (a shutdown).
BROKER_CALL_SECONDS = 5.0


class BrokerQueue:
    """The worker side of a broker transport (see the module's docstring)."""

    outbox = True

    def __init__(self, broker: Broker, attempts: Attempts) -> None:
        self.broker = broker
        self.attempts = attempts
        self.busy = 0
        self._room = trio.Event()
        self._held: dict[int, Delivery] = {}  # by result id: the message of each claim

    def wake(self) -> None:
        """Nothing to do: the broker's long poll answers as soon as a message is there."""

    def attempt_finished(self) -> None:
        self.busy -= 1
        self._room.set()

    async def keep(self, claim: Claim) -> None:
        delivery = self._held.get(claim.id)
        if delivery is None:
            return
        try:
            await self.broker.keep(delivery, self.attempts.lease_seconds)
        except QueueUnavailable as exc:
            # The PostgreSQL lease is the authority: at worst the message shows up elsewhere,
            # finds the attempt live, and is released again.
            log.warning("message lease not extended", extra={"id": claim.id, "error": str(exc)})

    async def finish(self, claim: Claim) -> None:
        delivery = self._held.pop(claim.id, None)
        if delivery is not None:
            await self._finish(delivery)

    async def _finish(self, delivery: Delivery) -> None:
        with trio.move_on_after(BROKER_CALL_SECONDS):
            try:
                await self.broker.finish(delivery)
            except QueueUnavailable as exc:
                # it comes back, finds its result not due any more, and is finished then
                log.warning(
                    "message not finished", extra={"id": delivery.result_id, "error": str(exc)}
                )

    async def _release(self, delivery: Delivery, seconds: float) -> None:
        with trio.move_on_after(BROKER_CALL_SECONDS):
            try:
                await self.broker.release(delivery, seconds)
            except QueueUnavailable as exc:
                log.warning(
                    "message not released", extra={"id": delivery.result_id, "error": str(exc)}
                )

    async def serve(
        self,
        send: trio.MemorySendChannel[Claim],
        *,
        capacity: int,
        hand_back: Callable[[Claim], Awaitable[object]],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        async with send:
            while True:
                free = capacity - self.busy
                if free <= 0:
                    self._room = trio.Event()
                    await self._room.wait()
                    continue
                try:
                    deliveries = await self.broker.receive(min(free, self.broker.max_batch))
                except QueueUnavailable as exc:
                    log.warning("queue unavailable", extra={"error": str(exc)})
                    await trio.sleep(BROKER_RETRY_SECONDS)
                    continue
                if deliveries:
                    claims = await self._claim(deliveries)
                    await self._hand_over(send, claims, hand_back)

    async def _claim(self, deliveries: Sequence[Delivery]) -> list[Claim]:
        """Claim the results ``deliveries`` name; deal with the messages of those not run."""
        first: dict[int, Delivery] = {}
        repeats: list[Delivery] = []
        for delivery in deliveries:
            if delivery.result_id in first:
                repeats.append(delivery)  # the same result twice in one batch
            else:
                first[delivery.result_id] = delivery
        # Shielded, within a bound, like the `postgres` claim: a claim cancelled mid-call may
        # still commit, and its messages must then be handed over (or back), not forgotten.
        answers = None
        with trio.CancelScope(shield=True) as shielded:
            shielded.deadline = trio.current_time() + CLAIM_SHIELD_SECONDS
            try:
                answers = await self.attempts.claim_results(list(first))
            except DatabaseUnavailable as exc:
                log.warning("dispatcher: database unavailable", extra={"error": str(exc)})
        if answers is None:  # they come back: the claim is tried again then
            for delivery in deliveries:
                await self._release(delivery, DATABASE_RETRY_SECONDS)
            return []
        claims: list[Claim] = []
        later = [(delivery, self.attempts.lease_seconds) for delivery in repeats]
        dropped: list[Delivery] = []
        for answer in answers:
            delivery = first[answer.result_id]
            if answer.verdict is Verdict.RUN:
                assert answer.claim is not None
                self._held[answer.result_id] = delivery
                claims.append(answer.claim)
            elif answer.verdict is Verdict.LATER:
                later.append((delivery, answer.later_seconds))
            else:
                dropped.append(delivery)
        # Cancelled from here on, the claims are still handed over (or back): `_hand_over`.
        with trio.CancelScope(shield=True):
            for delivery in dropped:
                log.info("message dropped: its result is not due", extra={"id": delivery.result_id})
                await self._finish(delivery)
            for delivery, seconds in later:
                await self._release(delivery, seconds)
        return claims

    async def _hand_over(
        self,
        send: trio.MemorySendChannel[Claim],
        claims: list[Claim],
        hand_back: Callable[[Claim], Awaitable[object]],
    ) -> None:
        """As the `postgres` dispatcher's: on cancellation, what no worker took goes back."""
        for index, claim in enumerate(claims):
            try:
                self.busy += 1
                await send.send(claim)
            except BaseException:
                self.busy -= 1
                with trio.CancelScope(shield=True):
                    for unsent in claims[index:]:
                        await hand_back(unsent)
                raise
