"""`Recent`: one computation in flight, a value reused while it is fresh (autojump clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bgchallenge.web.recent import Recent

MAX_AGE = 1.0
TAKES = 0.3  # virtual seconds one computation takes


class Check:
    """Counts its runs; each answers its run number after TAKES seconds."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail_next = False

    async def __call__(self) -> int:
        self.runs += 1
        run = self.runs
        await trio.sleep(TAKES)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the backend answered with an error")
        return run


async def gather(recent: Recent[int], callers: int) -> list[int]:
    answers: list[int] = []

    async def ask() -> None:
        answers.append(await recent())

    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(ask)
    return answers


async def test_concurrent_callers_share_one_computation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    check = Check()
    answers = await gather(Recent(check, MAX_AGE), 100)
    assert check.runs == 1 and answers == [1] * 100


async def test_a_value_is_reused_while_fresh_then_computed_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    check = Check()
    recent = Recent(check, MAX_AGE)
    assert await recent() == 1
    await trio.sleep(MAX_AGE * 0.9)
    assert await recent() == 1
    await trio.sleep(MAX_AGE * 0.2)
    assert await recent() == 2


async def test_a_caller_arriving_during_a_computation_gets_its_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    check = Check()
    recent = Recent(check, MAX_AGE)
    await recent()
    await trio.sleep(MAX_AGE * 2)  # stale: the next caller computes
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recent)
        await trio.sleep(TAKES / 2)
        assert await recent() == 2  # waited for the computation in flight, did not start one
    assert check.runs == 2


async def test_when_the_computing_caller_is_cancelled_a_waiter_computes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    check = Check()
    recent = Recent(check, MAX_AGE)
    async with trio.open_nursery() as nursery:
        leader = trio.CancelScope()

        async def lead() -> None:
            with leader:
                await recent()

        nursery.start_soon(lead)
        await trio.sleep(TAKES / 2)
        waiter = trio.Event()
        answers: list[int] = []

        async def wait() -> None:
            waiter.set()
            answers.append(await recent())

        nursery.start_soon(wait)
        await waiter.wait()
        leader.cancel()
    assert answers == [2] and check.runs == 2


async def test_an_error_is_not_kept(autojump_clock: trio.testing.MockClock) -> None:
    check = Check()
    check.fail_next = True
    recent = Recent(check, MAX_AGE)
    with pytest.raises(RuntimeError):
        await recent()
    assert await recent() == 2
