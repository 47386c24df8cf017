"""Group commit, and its twin for reads: callers queue up for one task, which serves whatever
is waiting with one statement and answers each caller with its own part of the result.

When idle, a call is served at once (nothing waits for a batch to fill); under load, the calls
that arrive while a statement runs go together in the next one, so a busy service makes fewer,
larger round trips and transactions instead of one per request. A call is answered only after
its statement has finished: for writes, once its row is committed; for reads, from a snapshot
taken after the call arrived, so a batched read is never older than an unbatched one would be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import outcome
import trio

Request = TypeVar("Request")
Answer = TypeVar("Answer")

MAX_BATCH = 500


@dataclass
class _Pending(Generic[Request, Answer]):
    request: Request
    done: trio.Event = field(default_factory=trio.Event)
    answer: outcome.Outcome[Answer] | None = None


class Batcher(Generic[Request, Answer]):
    """Serves calls through ``serve_batch(requests) -> answers`` (one answer per request, in
    order)."""

    def __init__(
        self, serve_batch: Callable[[Sequence[Request]], Awaitable[Sequence[Answer]]]
    ) -> None:
        self.serve_batch = serve_batch
        self._send, self._receive = trio.open_memory_channel[_Pending[Request, Answer]](
            MAX_BATCH * 4
        )

    async def __call__(self, request: Request) -> Answer:
        """Answer one request. Raises what serving its batch raised (`DatabaseUnavailable`
        during an outage). Cancelling the caller does not withdraw a request already queued."""
        pending: _Pending[Request, Answer] = _Pending(request)
        await self._send.send(pending)
        await pending.done.wait()
        assert pending.answer is not None
        return pending.answer.unwrap()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve batches until cancelled."""
        task_status.started()
        async with self._receive:
            while True:
                batch = [await self._receive.receive()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._serve(batch)

    async def _serve(self, batch: list[_Pending[Request, Answer]]) -> None:
        answers: list[outcome.Outcome[Answer]]
        try:
            served = await self.serve_batch([pending.request for pending in batch])
            answers = [outcome.Value(answer) for answer in served]
        except Exception as exc:  # every caller answers with it (a 503 for an outage)
            answers = [outcome.Error(exc) for _ in batch]
        for pending, answer in zip(batch, answers, strict=True):
            pending.answer = answer
            pending.done.set()
