"""The worker subtree: listener, dispatcher, reaper and N download workers.

serve_workers
├── workers x N one attempt at a time, each under its own cancel scope
└── control
    ├── listener    NOTIFY → wake the dispatcher (and, for cancels, the attempt)
    ├── dispatcher  claims up to the free capacity, hands over on a zero-buffer channel
    └── reaper      re-queues results whose worker process died (lease expired)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.db.listener import CANCELS_CHANNEL, RESULTS_CHANNEL, serve_listener
from bgchallenge.db.repository import Attempts
from bgchallenge.domain.failures import Failure
from bgchallenge.domain.keys import object_key
from bgchallenge.domain.results import Claim, StoredObject
from bgchallenge.domain.retry import GiveUp, RetryLater, decide, max_attempts
from bgchallenge.metrics import Metrics
from bgchallenge.settings import Settings
from bgchallenge.storage.s3 import Storage, StorageRejected, StorageUnavailable
from bgchallenge.work.dispatcher import Dispatcher
from bgchallenge.work.fetch import Fetcher
from bgchallenge.work.pipeline import copy_to_bucket

log = logging.getLogger(__name__)
T = TypeVar("T")

RECORD_RETRY_SECONDS = 0.5
EARLY_CANCEL_SECONDS = 60.0


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class ActiveAttempt:
    claim: Claim
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    reason: str | None = None  # why it was cancelled from inside: "lease_lost", "canceled"

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


@dataclass
class WorkContext:
    attempts: Attempts
    fetcher: Fetcher
    storage: Storage
    settings: Settings
    metrics: Metrics
    active: dict[int, ActiveAttempt] = field(default_factory=dict)
    # Cancels heard for results this process was not (yet) running, by when they were heard:
    # a cancel can arrive between the claim's commit and the attempt's start.
    early_cancels: dict[int, float] = field(default_factory=dict)

    def cancel_requested(self, result_id: int) -> None:
        attempt = self.active.get(result_id)
        if attempt is not None:
            attempt.cancel("canceled")
            return
        now = trio.current_time()
        self.early_cancels[result_id] = now
        for stale in [
            i for i, heard in self.early_cancels.items() if now - heard > EARLY_CANCEL_SECONDS
        ]:
            del self.early_cancels[stale]


async def _persistently(action: Callable[[], Awaitable[T]], seconds: float) -> T | None:
    """Retry ``action`` through database outages for up to ``seconds``; None if it never ran.

    Giving up loses nothing: the lease expires and the reaper queues the result again.
    """
    with trio.move_on_after(seconds):
        while True:
            try:
                return await action()
            except DatabaseUnavailable as exc:
                log.warning("database unavailable; retrying", extra={"error": str(exc)})
                await trio.sleep(RECORD_RETRY_SECONDS)
    return None


async def _quietly(storing: Awaitable[None]) -> None:
    try:
        await storing
    except (StorageUnavailable, StorageRejected) as exc:
        log.warning("storage clean-up failed", extra={"error": str(exc)})


async def _keep_lease(ctx: WorkContext, attempt: ActiveAttempt) -> None:
    interval = ctx.settings.lease_seconds / 3
    while True:
        await trio.sleep(interval)
        try:
            cancel_requested = await ctx.attempts.extend_lease(attempt.claim)
        except DatabaseUnavailable:
            continue
        if cancel_requested is None:
            attempt.cancel("lease_lost")
        elif cancel_requested:
            attempt.cancel("canceled")


async def run_attempt(ctx: WorkContext, claim: Claim) -> None:
    """Run one claimed attempt to an outcome recorded in the database.

    If an outer cancellation (a shutdown past its grace period) interrupts it, the upload is
    aborted and the result handed back to the queue without spending the attempt.
    """
    attempt = ActiveAttempt(claim)
    ctx.active[claim.id] = attempt
    if ctx.early_cancels.pop(claim.id, None) is not None:
        attempt.cancel("canceled")
    recorded = False
    fields = {"id": claim.id, "jobId": claim.job_id, "attempt": claim.attempts}
    log.info("attempt started", extra={**fields, "url": claim.url})
    ctx.metrics.attempts.inc()
    started = trio.current_time()
    try:
        outcome: StoredObject | Failure | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_lease, ctx, attempt)
            with attempt.scope:
                try:
                    outcome = await copy_to_bucket(
                        claim,
                        ctx.fetcher,
                        ctx.storage,
                        part_size=ctx.settings.part_size,
                        attempt_seconds=ctx.settings.attempt_seconds,
                        observe_download=ctx.metrics.download_seconds.observe,
                    )
                except Failure as failure:
                    outcome = failure
                except Exception as exc:  # a bug must not kill the worker: retry, loudly
                    log.exception("attempt crashed", extra=fields)
                    outcome = Failure("origin_unavailable", f"internal error: {exc!r}")
            nursery.cancel_scope.cancel()
        elapsed_ms = round((trio.current_time() - started) * 1000)
        await _record(ctx, attempt, outcome, {**fields, "ms": elapsed_ms})
        recorded = True
    finally:
        del ctx.active[claim.id]
        if not recorded:
            with trio.CancelScope(shield=True):
                await _persistently(lambda: ctx.attempts.hand_back(claim), 5.0)
                ctx.metrics.handed_back.inc()
                log.info("attempt handed back", extra=fields)


async def _record(
    ctx: WorkContext,
    attempt: ActiveAttempt,
    outcome: StoredObject | Failure | None,
    fields: dict[str, object],
) -> None:
    claim = attempt.claim
    lease = ctx.settings.lease_seconds
    if outcome is None:
        if attempt.reason == "canceled":
            # The cancel may have landed after the object was stored, on the way out.
            await _quietly(ctx.storage.delete(object_key(claim.id, claim.object_path)))
            await _persistently(lambda: ctx.attempts.record_canceled(claim), lease)
            ctx.metrics.canceled.inc()
            log.info("canceled", extra=fields)
        else:
            log.info("attempt stopped", extra={**fields, "reason": attempt.reason})
        return
    if isinstance(outcome, StoredObject):
        await _persistently(lambda: ctx.attempts.record_success(claim, outcome), lease)
        ctx.metrics.succeeded.inc()
        ctx.metrics.bytes_stored.inc(outcome.size)
        log.info("succeeded", extra={**fields, "size": outcome.size, "key": outcome.key})
        return
    decision = decide(outcome, claim.attempts, ctx.settings.retry_delays)
    if isinstance(decision, RetryLater):
        await _persistently(
            lambda: ctx.attempts.schedule_retry(
                claim, outcome.code, outcome.message, decision.delay_seconds
            ),
            lease,
        )
        ctx.metrics.retries.labels(outcome.code).inc()
        log.info(
            "retry scheduled",
            extra={**fields, "error": outcome.code, "delay": decision.delay_seconds},
        )
    else:
        assert isinstance(decision, GiveUp)
        await _persistently(
            lambda: ctx.attempts.record_failure(claim, decision.code, decision.message), lease
        )
        ctx.metrics.failed.labels(decision.code).inc()
        log.info("failed", extra={**fields, "error": decision.code, "detail": decision.message})


async def _work(
    ctx: WorkContext, receive: trio.MemoryReceiveChannel[Claim], finished: Callable[[], None]
) -> None:
    async with receive:
        async for claim in receive:
            try:
                await run_attempt(ctx, claim)
            finally:
                finished()


async def _reap(ctx: WorkContext) -> None:
    interval = max(ctx.settings.lease_seconds / 2, 0.05)
    limit = max_attempts(ctx.settings.retry_delays)
    while True:
        try:
            for row in await ctx.attempts.reap_expired_leases(limit):
                ctx.metrics.leases_expired.inc()
                log.warning(
                    "lease expired",
                    extra={"id": row["id"], "jobId": row["job_id"], "status": row["status"]},
                )
        except DatabaseUnavailable:
            pass
        await trio.sleep(interval)


async def serve_workers(
    ctx: WorkContext,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the workers until ``shutdown``; then stop claiming, let running attempts finish for
    the grace period, and cancel the rest (their results are handed back to the queue).
    """
    settings = ctx.settings
    send, receive = trio.open_memory_channel[Claim](0)

    async def hand_back(claim: Claim) -> None:
        await _persistently(lambda: ctx.attempts.hand_back(claim), 5.0)

    dispatcher = Dispatcher(
        ctx.attempts,
        send,
        capacity=settings.workers,
        sweep_seconds=settings.sweep_seconds,
        hand_back=hand_back,
    )

    def on_notify(channel: str, payload: str) -> None:
        if channel == RESULTS_CHANNEL:
            dispatcher.wake()
        elif channel == CANCELS_CHANNEL and payload.isdigit():
            ctx.cancel_requested(int(payload))

    connections = 0

    def on_connect() -> None:
        """After every (re)connect: look for what a missed NOTIFY would have announced."""
        nonlocal connections
        connections += 1
        if connections > 1:
            ctx.metrics.listener_reconnects.inc()
        dispatcher.wake()

    ctx.metrics.workers.set(settings.workers)
    ctx.metrics.workers_busy.set_function(lambda: len(ctx.active))
    try:
        await _supervise(ctx, shutdown, dispatcher, on_connect, on_notify, receive, task_status)
    finally:
        with trio.CancelScope(shield=True):
            await ctx.fetcher.aclose()


async def _supervise(
    ctx: WorkContext,
    shutdown: trio.Event,
    dispatcher: Dispatcher,
    on_connect: Callable[[], None],
    on_notify: Callable[[str, str], None],
    receive: trio.MemoryReceiveChannel[Claim],
    task_status: trio.TaskStatus[None],
) -> None:
    settings = ctx.settings
    async with trio.open_nursery() as workers:
        async with receive:
            for _ in range(settings.workers):
                workers.start_soon(_work, ctx, receive.clone(), dispatcher.attempt_finished)
        async with trio.open_nursery() as control:
            await control.start(
                serve_listener,
                ctx.attempts.database,
                (RESULTS_CHANNEL, CANCELS_CHANNEL),
                on_connect,
                on_notify,
            )
            await control.start(dispatcher.run)
            control.start_soon(_reap, ctx)
            task_status.started()
            await shutdown.wait()
            log.info(
                "workers stopping",
                extra={"running": len(ctx.active), "graceSeconds": settings.grace_seconds},
            )
            control.cancel_scope.cancel()
        workers.cancel_scope.deadline = trio.current_time() + settings.grace_seconds
