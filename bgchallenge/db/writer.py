"""Group commit for enqueue: requests queue up for one writer task, which stores whatever is
waiting in one statement and answers each request with its own outcome.

When idle, a request is written at once (nothing waits for a batch to fill); under load, the
requests that arrive while a statement runs go together in the next one, so a busy service
makes fewer, larger transactions instead of one per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import outcome
import trio

from bgchallenge.db.repository import Enqueued, Results
from bgchallenge.domain.enqueue import EnqueueRequest

MAX_BATCH = 500


@dataclass
class _Pending:
    request: EnqueueRequest
    done: trio.Event = field(default_factory=trio.Event)
    answer: outcome.Outcome[Enqueued] | None = None


class EnqueueWriter:
    def __init__(self, results: Results) -> None:
        self.results = results
        self._send, self._receive = trio.open_memory_channel[_Pending](MAX_BATCH * 4)

    async def enqueue(self, request: EnqueueRequest) -> Enqueued:
        """Store one request; answer only once its row (or the existing one) is committed.

        Raises what storing raised (`DatabaseUnavailable` when PostgreSQL is down). Cancelling
        the caller does not withdraw a request already handed to the writer: it is stored.
        """
        pending = _Pending(request)
        await self._send.send(pending)
        await pending.done.wait()
        assert pending.answer is not None
        return pending.answer.unwrap()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until cancelled."""
        task_status.started()
        async with self._receive:
            while True:
                batch = [await self._receive.receive()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        answers: list[outcome.Outcome[Enqueued]]
        try:
            stored = await self.results.enqueue_many([pending.request for pending in batch])
            answers = [outcome.Value(enqueued) for enqueued in stored]
        except Exception as exc:  # each request answers with it (a 503 for an outage)
            answers = [outcome.Error(exc)] * len(batch)
        for pending, answer in zip(batch, answers, strict=True):
            pending.answer = answer
            pending.done.set()
