"""The batcher behind group commit and grouped reads, with a fake batch function."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from bgchallenge.db.batching import Batcher


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    async def serve(self, requests: Sequence[int]) -> list[int]:
        self.batches.append(list(requests))
        await trio.sleep(1)  # one round trip
        if self.fail:
            raise ConnectionError("down")
        return [r * 10 for r in requests]


async def test_idle_call_is_served_at_once_and_waiting_calls_share_a_batch(
    autojump_clock: trio.abc.Clock,
) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.serve)
    answers: dict[int, tuple[int, float]] = {}

    async def call(n: int) -> None:
        answers[n] = (await batcher(n), trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        nursery.start_soon(call, 1)
        await trio.sleep(0.5)  # 1 is being served: these wait and go together
        for n in (2, 3, 4):
            nursery.start_soon(call, n)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [sorted(batch) for batch in recorder.batches] == [[1], [2, 3, 4]]
    assert answers == {1: (10, 1.0), 2: (20, 2.0), 3: (30, 2.0), 4: (40, 2.0)}


async def test_a_failed_batch_fails_each_of_its_calls(autojump_clock: trio.abc.Clock) -> None:
    batcher = Batcher(Recorder(fail=True).serve)
    errors: list[Exception] = []

    async def call(n: int) -> None:
        with pytest.raises(ConnectionError) as caught:
            await batcher(n)
        errors.append(caught.value)

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        for n in range(3):
            nursery.start_soon(call, n)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert len(errors) == 3
