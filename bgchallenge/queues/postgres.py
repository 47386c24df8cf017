"""The ``postgres`` transport: the results table is the queue.

The enqueue's commit announces the work itself (the results_inserted_queued trigger's NOTIFY,
heard by the worker subtree's listener, which calls `wake`); the `Dispatcher` claims due rows
with FOR UPDATE SKIP LOCKED up to the free capacity. The lease is the row's own
(``extend_lease``), so `keep` and `finish` have nothing to do, and no outbox is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from bgchallenge.domain.results import Claim
from bgchallenge.work.dispatcher import ClaimStore, Dispatcher


class PostgresQueue:
    """`bgchallenge.work.queue.WorkQueue` over the results table."""

    outbox = False

    def __init__(self, store: ClaimStore, *, sweep_seconds: float) -> None:
        self.store = store
        self.sweep_seconds = sweep_seconds
        self._dispatcher: Dispatcher | None = None
        self._woken = False  # a wake before `serve` started is kept for it

    async def serve(
        self,
        send: trio.MemorySendChannel[Claim],
        *,
        capacity: int,
        hand_back: Callable[[Claim], Awaitable[object]],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._dispatcher = Dispatcher(
            self.store,
            send,
            capacity=capacity,
            sweep_seconds=self.sweep_seconds,
            hand_back=hand_back,
        )
        if self._woken:
            self._dispatcher.wake()
        await self._dispatcher.run(task_status=task_status)

    def wake(self) -> None:
        if self._dispatcher is None:
            self._woken = True
        else:
            self._dispatcher.wake()

    def attempt_finished(self) -> None:
        assert self._dispatcher is not None, "a claim came from serve()"
        self._dispatcher.attempt_finished()

    async def keep(self, claim: Claim) -> None:
        await trio.lowlevel.checkpoint()

    async def finish(self, claim: Claim) -> None:
        await trio.lowlevel.checkpoint()
