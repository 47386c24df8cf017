"""The worker subtree: listener, dispatcher, reaper and N download workers.

serve_workers
├── workers x N one attempt at a time, each under its own cancel scope
└── control
    ├── listener    NOTIFY → wake the dispatcher (and, for cancels, the attempt)
    ├── dispatcher  the queue (bgchallenge/work/queue.py): claims up to the free capacity,
    │               hands over on a zero-buffer channel
    ├── reaper      re-queues results whose worker process died (lease expired)
    ├── sweep       cleans the bucket of results that ended without success
    └── callbacks   delivers completion callbacks (when BGC_WEBHOOK_SECRET is set)
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.db.listener import CANCELS_CHANNEL, RESULTS_CHANNEL, serve_listener
from bgchallenge.db.repository import Attempts
from bgchallenge.domain.failures import Failure
from bgchallenge.domain.keys import object_key
from bgchallenge.domain.results import Claim, Status, StoredObject
from bgchallenge.domain.retry import GiveUp, RetryLater, decide, max_attempts
from bgchallenge.domain.transfer import ProgressMeter, WriteSchedule
from bgchallenge.metrics import Metrics
from bgchallenge.settings import Settings
from bgchallenge.storage.s3 import Storage, StorageRejected, StorageUnavailable
from bgchallenge.work.callbacks import serve_callbacks
from bgchallenge.work.fetch import Fetcher
from bgchallenge.work.pipeline import copy_to_bucket
from bgchallenge.work.queue import WorkQueue

log = logging.getLogger(__name__)
T = TypeVar("T")

RECORD_RETRY_SECONDS = 0.5
EARLY_CANCEL_SECONDS = 60.0
# The sweep's batch, and how long a result it took stays out of other sweeps' way (and is
# retried after, should cleaning fail).
CLEANUP_BATCH = 20
CLEANUP_LEASE_SECONDS = 60.0
HAND_BACK_CLEANUP_SECONDS = 5.0
# Bounds the queue's `finish` when the attempt's task is being cancelled (a shutdown).
FINISH_SECONDS = 5.0
NOT_OURS = "attempt no longer ours"


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class ActiveAttempt:
    claim: Claim
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    reason: str | None = None  # why it was cancelled from inside: "lease_lost", "canceled"
    progress: ProgressMeter = field(default_factory=ProgressMeter)

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
    queue: WorkQueue
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


async def _persistently(
    action: Callable[[], Awaitable[T]], seconds: float, fields: dict[str, object]
) -> T | None:
    """Retry ``action`` through database outages for up to ``seconds``; None if it never ran.

    Giving up loses nothing: the lease expires and the reaper queues the result again.
    """
    with trio.move_on_after(seconds):
        while True:
            try:
                return await action()
            except DatabaseUnavailable as exc:
                log.warning("database unavailable; retrying", extra={**fields, "error": str(exc)})
                await trio.sleep(RECORD_RETRY_SECONDS)
    return None


async def _fenced(write: Awaitable[Status | None]) -> Status | str:
    return await write or NOT_OURS


async def _write_outcome(
    write: Callable[[], Awaitable[Status | None]], seconds: float, fields: dict[str, object]
) -> Status | str:
    """The status a fenced outcome query recorded, or why it recorded none."""
    written = await _persistently(lambda: _fenced(write()), seconds, fields)
    return "database unavailable" if written is None else written


async def _clean_storage(
    ctx: WorkContext, result_id: int, key: str, fields: dict[str, object]
) -> bool:
    """Empty a result's key in the bucket, then clear its recorded clean-up obligation.

    Run only once the result is recorded as ended without success: before that, another
    attempt may be writing the same key. Should it fail (or this process die), the reaper's
    sweep does it again.
    """
    try:
        await ctx.storage.clean(key)
    except (StorageUnavailable, StorageRejected) as exc:
        log.warning(
            "storage clean-up failed; the sweep retries it", extra={**fields, "error": str(exc)}
        )
        return False
    with contextlib.suppress(DatabaseUnavailable):
        await ctx.attempts.storage_cleaned(result_id)
    return True


async def _keep_lease(ctx: WorkContext, attempt: ActiveAttempt) -> None:
    """Extend the lease, storing the download's progress in the same write (see WriteSchedule)."""
    schedule = WriteSchedule(
        ctx.settings.lease_seconds / 3, ctx.settings.progress_seconds, trio.current_time()
    )
    while True:
        await trio.sleep(schedule.tick)
        now = trio.current_time()
        write = schedule.due(attempt.progress.current, now)
        if write is None:
            continue
        try:
            cancel_requested = await ctx.attempts.extend_lease(attempt.claim, write.progress)
        except DatabaseUnavailable:
            continue
        schedule.wrote(write, now)
        if cancel_requested is None:
            attempt.cancel("lease_lost")
            continue
        if cancel_requested:
            attempt.cancel("canceled")
        await ctx.queue.keep(attempt.claim)


async def run_attempt(ctx: WorkContext, claim: Claim) -> None:
    """Run one claimed attempt to an outcome recorded in the database.

    If an outer cancellation (a shutdown past its grace period) interrupts it, the upload is
    aborted and the result handed back to the queue without spending the attempt.
    """
    attempt = ActiveAttempt(claim)
    ctx.active[claim.id] = attempt
    if ctx.early_cancels.pop(claim.id, None) is not None:
        attempt.cancel("canceled")
    recorded = must_clean = False
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
                        on_received=attempt.progress.receive,
                    )
                except Failure as failure:
                    outcome = failure
                except Exception as exc:  # a bug must not kill the worker: retry, loudly
                    log.exception("attempt crashed", extra=fields)
                    outcome = Failure("origin_unavailable", f"internal error: {exc!r}")
            nursery.cancel_scope.cancel()
        elapsed_ms = round((trio.current_time() - started) * 1000)
        must_clean = await _record(ctx, attempt, outcome, {**fields, "ms": elapsed_ms})
        recorded = True
    finally:
        del ctx.active[claim.id]
        with trio.CancelScope(shield=True):
            if not recorded:
                await hand_back(ctx, claim, fields)
            await _finish(ctx, claim)
    if must_clean:
        # After the record, not before: until the terminal state is committed another attempt
        # may own the key. The obligation was committed with that state, so a crash or a
        # cancellation from here on leaves the work to the reaper's sweep.
        await _clean_storage(ctx, claim.id, object_key(claim.id, claim.object_path), fields)


async def _finish(ctx: WorkContext, claim: Claim) -> None:
    """The attempt's outcome is recorded (or it was handed back, or is not ours any more):
    the queue lets go of its message."""
    with trio.move_on_after(FINISH_SECONDS):
        await ctx.queue.finish(claim)


async def hand_back(ctx: WorkContext, claim: Claim, fields: dict[str, object]) -> None:
    """Give an unfinished attempt back to the queue (canceled instead if a cancel came)."""
    status = await _write_outcome(lambda: ctx.attempts.hand_back(claim), 5.0, fields)
    if status is Status.QUEUED:
        ctx.metrics.handed_back.inc()
        log.info("attempt handed back", extra=fields)
    elif status is Status.CANCELED:
        ctx.metrics.canceled.inc()
        log.info("canceled", extra=fields)
        # Bounded: this may run during a shutdown; the sweep finishes what it leaves.
        with trio.move_on_after(HAND_BACK_CLEANUP_SECONDS):
            await _clean_storage(ctx, claim.id, object_key(claim.id, claim.object_path), fields)
    else:
        log.warning("attempt not handed back", extra={**fields, "reason": status})


async def _record(
    ctx: WorkContext,
    attempt: ActiveAttempt,
    outcome: StoredObject | Failure | None,
    fields: dict[str, object],
) -> bool:
    """Record the attempt's outcome, then log and count what the database actually recorded.

    Answers whether the result's key must now be cleaned (it ended failed or canceled).
    """
    claim = attempt.claim
    lease = ctx.settings.lease_seconds
    progress = attempt.progress.current  # stored with the outcome: the final value
    if outcome is None and attempt.reason != "canceled":
        log.info("attempt stopped", extra={**fields, "reason": attempt.reason})
        return False
    write: Callable[[], Awaitable[Status | None]]
    if outcome is None:
        intended = Status.CANCELED
        write = lambda: ctx.attempts.record_canceled(claim, progress)  # noqa: E731
    elif isinstance(outcome, StoredObject):
        intended = Status.SUCCEEDED
        write = lambda: ctx.attempts.record_success(claim, outcome, progress)  # noqa: E731
    else:
        decision = decide(
            outcome,
            claim.attempts,
            ctx.settings.retry_delays,
            expires_at=claim.url_expires_at,
            now=datetime.now(UTC),
        )
        failure = outcome
        if isinstance(decision, RetryLater):
            intended = Status.QUEUED
            delay = decision.delay_seconds
            write = lambda: ctx.attempts.schedule_retry(  # noqa: E731
                claim, failure.code, failure.message, delay, progress
            )
        else:
            assert isinstance(decision, GiveUp)
            intended = Status.FAILED
            give_up = decision
            write = lambda: ctx.attempts.record_failure(  # noqa: E731
                claim, give_up.code, give_up.message, progress
            )
    status = await _write_outcome(write, lease, fields)
    if not isinstance(status, Status):
        ctx.metrics.outcomes_not_recorded.inc()
        log.warning(
            "outcome not recorded", extra={**fields, "outcome": str(intended), "reason": status}
        )
        # A stored object whose result has meanwhile ended without success must go.
        if isinstance(outcome, StoredObject):
            with contextlib.suppress(DatabaseUnavailable):
                return await ctx.attempts.require_storage_cleanup(claim.id)
        return False
    if status is Status.SUCCEEDED:
        assert isinstance(outcome, StoredObject)
        ctx.metrics.succeeded.inc()
        ctx.metrics.bytes_stored.inc(outcome.size)
        log.info("succeeded", extra={**fields, "size": outcome.size, "key": outcome.key})
    elif status is Status.QUEUED:
        assert isinstance(outcome, Failure) and isinstance(decision, RetryLater)
        ctx.metrics.retries.labels(outcome.code).inc()
        log.info(
            "retry scheduled",
            extra={**fields, "error": outcome.code, "delay": decision.delay_seconds},
        )
    elif status is Status.FAILED:
        assert isinstance(decision, GiveUp)
        ctx.metrics.failed.labels(decision.code).inc()
        log.info("failed", extra={**fields, "error": decision.code, "detail": decision.message})
    else:
        assert status is Status.CANCELED
        ctx.metrics.canceled.inc()
        log.info(
            "canceled",
            extra=fields if intended is Status.CANCELED else {**fields, "outcome": str(intended)},
        )
    return status in (Status.FAILED, Status.CANCELED)


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


async def _sweep(ctx: WorkContext) -> None:
    """Next to the reaper, on the same period, in a task of its own: a slow S3 never delays
    the reaping of expired leases."""
    interval = max(ctx.settings.lease_seconds / 2, 0.05)
    while True:
        with contextlib.suppress(DatabaseUnavailable):
            await sweep_storage(ctx)
        await trio.sleep(interval)


async def sweep_storage(ctx: WorkContext) -> None:
    """Clean the keys of results that ended without success and whose clean-up is due: those
    whose worker died before cleaning, those the reaper failed, those canceled while queued
    after an attempt. One bounded batch per call."""
    for row in await ctx.attempts.claim_storage_cleanups(CLEANUP_BATCH, CLEANUP_LEASE_SECONDS):
        fields: dict[str, object] = {"id": row["id"], "jobId": row["job_id"]}
        key = object_key(row["id"], row["object_path"])
        if await _clean_storage(ctx, row["id"], key, fields):
            log.info("storage cleaned", extra=fields)


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

    async def hand_back_unsent(claim: Claim) -> None:
        await hand_back(ctx, claim, {"id": claim.id, "jobId": claim.job_id})
        await _finish(ctx, claim)

    async def dispatcher(*, task_status: trio.TaskStatus[None]) -> None:
        await ctx.queue.serve(
            send, capacity=settings.workers, hand_back=hand_back_unsent, task_status=task_status
        )

    def on_notify(channel: str, payload: str) -> None:
        if channel == RESULTS_CHANNEL:
            ctx.queue.wake()
        elif channel == CANCELS_CHANNEL and payload.isdigit():
            ctx.cancel_requested(int(payload))

    connections = 0

    def on_connect() -> None:
        """After every (re)connect: look for what a missed NOTIFY would have announced."""
        nonlocal connections
        connections += 1
        if connections > 1:
            ctx.metrics.listener_reconnects.inc()
        ctx.queue.wake()

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
    dispatcher: Callable[..., Awaitable[None]],
    on_connect: Callable[[], None],
    on_notify: Callable[[str, str], None],
    receive: trio.MemoryReceiveChannel[Claim],
    task_status: trio.TaskStatus[None],
) -> None:
    settings = ctx.settings
    async with trio.open_nursery() as workers:
        async with receive:
            for _ in range(settings.workers):
                workers.start_soon(_work, ctx, receive.clone(), ctx.queue.attempt_finished)
        async with trio.open_nursery() as control:
            await control.start(
                serve_listener,
                ctx.attempts.database,
                (RESULTS_CHANNEL, CANCELS_CHANNEL),
                on_connect,
                on_notify,
            )
            await control.start(dispatcher)
            control.start_soon(_reap, ctx)
            control.start_soon(_sweep, ctx)
            if settings.webhook_secret is not None:
                await control.start(
                    serve_callbacks,
                    ctx.attempts.database,
                    settings,
                    ctx.metrics,
                    ctx.attempts.owner,
                )
            task_status.started()
            await shutdown.wait()
            log.info(
                "workers stopping",
                extra={"running": len(ctx.active), "graceSeconds": settings.grace_seconds},
            )
            # The grace period starts now, while the control tasks stop (a broker's receive
            # may take its long poll to return).
            workers.cancel_scope.deadline = trio.current_time() + settings.grace_seconds
            control.cancel_scope.cancel()
