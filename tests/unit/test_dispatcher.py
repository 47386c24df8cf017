"""The dispatcher against an in-memory store, on the autojump clock (no database, no real time).

The fake store is a list of (due time, claim) pairs compared with `trio.current_time()`; it
records every call. Each query answers from the state at its start and may take `latency`
virtual seconds, like a round trip to a database. Workers are tasks reading a zero-buffer
channel: a claim is received at the moment the dispatcher hands it over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.domain.results import Claim
from bgchallenge.work.dispatcher import DATABASE_RETRY_SECONDS, Dispatcher


def make_claim(result_id: int) -> Claim:
    return Claim(
        id=result_id,
        job_id="job-1",
        url=f"https://origin.test/{result_id}.png",
        source_url=f"https://origin.test/{result_id}.png?sig=secret",
        object_path=f"/{result_id}.png",
        attempts=1,
    )


@dataclass
class FakeStore:
    """Queued claims with due times; counts claims handed out and not yet finished."""

    claim_latency: float = 0.0
    next_due_latency: float = 0.0
    outages: int = 0  # this many claim_due calls raise DatabaseUnavailable first
    queue: list[tuple[float, Claim]] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    claim_times: list[float] = field(default_factory=list)
    in_flight_at_call: list[int] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def add(self, claim: Claim, due_at: float | None = None) -> None:
        self.queue.append((trio.current_time() if due_at is None else due_at, claim))

    def finished(self) -> None:
        self.in_flight -= 1

    async def claim_due(self, limit: int) -> list[Claim]:
        self.limits.append(limit)
        self.claim_times.append(trio.current_time())
        self.in_flight_at_call.append(self.in_flight)
        if self.outages:
            self.outages -= 1
            await trio.lowlevel.checkpoint()
            raise DatabaseUnavailable("connection refused")
        now = trio.current_time()
        ready = sorted((item for item in self.queue if item[0] <= now), key=lambda item: item[0])[
            :limit
        ]
        for item in ready:
            self.queue.remove(item)
        self.in_flight += len(ready)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await trio.sleep(self.claim_latency)
        return [claim for _, claim in ready]

    async def seconds_until_next_due(self) -> float | None:
        now = trio.current_time()
        answer = max(0.0, min(due for due, _ in self.queue) - now) if self.queue else None
        await trio.sleep(self.next_due_latency)
        return answer


@dataclass
class Received:
    """What the workers received, and when (virtual seconds)."""

    log: list[tuple[float, int]] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [at for at, _ in self.log]

    @property
    def ids(self) -> list[int]:
        return [result_id for _, result_id in self.log]


WorkSeconds = float | Callable[[Claim], float]


async def worker(
    receive: trio.MemoryReceiveChannel[Claim],
    received: Received,
    work_seconds: WorkSeconds,
    finished: Callable[[], None],
) -> None:
    async for claim in receive:
        received.log.append((trio.current_time(), claim.id))
        await trio.sleep(work_seconds(claim) if callable(work_seconds) else work_seconds)
        finished()


@dataclass
class Setup:
    store: FakeStore
    dispatcher: Dispatcher
    receive: trio.MemoryReceiveChannel[Claim]
    received: Received
    handed_back: list[Claim]

    def start_workers(self, nursery: trio.Nursery, count: int, work_seconds: WorkSeconds) -> None:
        def finished() -> None:
            self.store.finished()
            self.dispatcher.attempt_finished()

        for _ in range(count):
            nursery.start_soon(worker, self.receive, self.received, work_seconds, finished)


def make_setup(store: FakeStore, *, capacity: int, sweep_seconds: float) -> Setup:
    send, receive = trio.open_memory_channel[Claim](0)
    handed_back: list[Claim] = []

    async def hand_back(claim: Claim) -> None:
        await trio.lowlevel.checkpoint()
        handed_back.append(claim)

    dispatcher = Dispatcher(
        store, send, capacity=capacity, sweep_seconds=sweep_seconds, hand_back=hand_back
    )
    return Setup(store, dispatcher, receive, Received(), handed_back)


async def test_never_claims_more_than_the_free_capacity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    for result_id in range(1, 11):
        store.add(make_claim(result_id), due_at=0.0)
    s = make_setup(store, capacity=3, sweep_seconds=60.0)
    # Attempts of 1, 2 or 3 s, so workers free up one or two at a time.
    durations = {result_id: float(result_id % 3 + 1) for result_id in range(1, 11)}
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            s.start_workers(nursery, count=3, work_seconds=lambda claim: durations[claim.id])
            await nursery.start(s.dispatcher.run)
            await trio.sleep(10)
            nursery.cancel_scope.cancel()

    # 1, 2, 3 at once; then each one as soon as a worker is free (3 ends at 1, 1 at 2, ...).
    assert s.received.log == [
        (0.0, 1),
        (0.0, 2),
        (0.0, 3),
        (1.0, 4),
        (2.0, 5),
        (3.0, 6),
        (3.0, 7),
        (4.0, 8),
        (5.0, 9),
        (5.0, 10),
    ]
    assert s.store.limits[0] == 3
    assert 1 in s.store.limits  # some claims came while only one worker was free
    for limit, in_flight in zip(s.store.limits, s.store.in_flight_at_call, strict=True):
        assert 1 <= limit <= 3 - in_flight
    assert s.store.max_in_flight == 3
    assert s.store.in_flight == 0
    assert s.dispatcher.busy == 0
    assert s.handed_back == []


async def test_a_full_dispatcher_is_woken_by_a_finishing_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(make_claim(1), due_at=0.0)
    store.add(make_claim(2), due_at=0.0)
    s = make_setup(store, capacity=1, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=1, work_seconds=2.0)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()

    assert s.received.log == [(0.0, 1), (2.0, 2)]
    assert s.store.limits[:2] == [1, 1]
    assert s.store.claim_times[:2] == [0.0, 2.0]


async def test_future_items_are_dispatched_at_their_due_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(make_claim(1), due_at=5.0)
    store.add(make_claim(2), due_at=8.0)
    s = make_setup(store, capacity=2, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=2, work_seconds=0.5)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(4.999)
        assert s.received.log == []
        await trio.sleep(20)
        nursery.cancel_scope.cancel()

    assert s.received.log == [(5.0, 1), (8.0, 2)]
    # It slept until each due time: no claim in between (the other wake-ups are finishing
    # workers, at 5.5 and 8.5).
    assert s.store.claim_times == [0.0, 5.0, 5.5, 8.0, 8.5]


async def test_the_sweep_caps_the_sleep_until_a_far_due_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(make_claim(1), due_at=100.0)
    s = make_setup(store, capacity=1, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=1, work_seconds=1.0)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(100.5)
        nursery.cancel_scope.cancel()

    assert s.store.claim_times == [0.0, 60.0, 100.0]
    assert s.received.log == [(100.0, 1)]


async def test_a_wake_while_idle_claims_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = make_setup(FakeStore(), capacity=2, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=2, work_seconds=1.0)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(2)
        s.store.add(make_claim(1))
        s.dispatcher.wake()
        await trio.sleep(0.5)
        assert s.received.log == [(2.0, 1)]
        nursery.cancel_scope.cancel()

    assert s.store.claim_times == [0.0, 2.0]
    assert s.store.limits == [2, 2]


async def test_without_a_wake_the_sweep_finds_a_new_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = make_setup(FakeStore(), capacity=1, sweep_seconds=7.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=1, work_seconds=1.0)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(2)
        s.store.add(make_claim(1))
        await trio.sleep(6)
        nursery.cancel_scope.cancel()

    assert s.received.log == [(7.0, 1)]
    assert s.store.claim_times[:2] == [0.0, 7.0]


async def test_a_wake_during_claim_due_is_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # claim_due takes 1 s and answers from the state at its start, so the item added at 0.5
    # is not in its answer. The wake-up makes the dispatcher claim again as soon as the pass
    # ends (at 1.0), not after the short locked-rows retry (which would give 1.01).
    s = make_setup(FakeStore(claim_latency=1.0), capacity=1, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=1, work_seconds=0.25)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(0.5)
        s.store.add(make_claim(1))
        s.dispatcher.wake()
        await trio.sleep(3)
        nursery.cancel_scope.cancel()

    assert s.store.claim_times[:2] == [0.0, 1.0]
    assert s.received.log == [(2.0, 1)]


async def test_a_wake_during_the_next_due_query_is_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The pass at t=0 finds nothing and its next-due query (started at 0, answering at 1)
    # says "nothing queued", so only the sticky wake-up flag can bring the item in before
    # the 60 s sweep.
    s = make_setup(FakeStore(next_due_latency=1.0), capacity=1, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=1, work_seconds=0.25)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(0.5)
        s.store.add(make_claim(1))
        s.dispatcher.wake()
        await trio.sleep(3)
        nursery.cancel_scope.cancel()

    assert s.store.claim_times[:2] == [0.0, 1.0]
    assert s.received.log == [(1.0, 1)]


async def test_cancellation_hands_back_claims_no_worker_took(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    claims = [make_claim(1), make_claim(2)]
    for claim in claims:
        store.add(claim, due_at=0.0)
    s = make_setup(store, capacity=3, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.dispatcher.run)  # no workers: the first send blocks
        await trio.sleep(1)
        assert s.store.limits == [3]
        assert s.handed_back == []
        nursery.cancel_scope.cancel()

    assert s.handed_back == claims
    assert s.dispatcher.busy == 0
    with pytest.raises(trio.EndOfChannel):
        s.receive.receive_nowait()


async def test_cancellation_keeps_handed_over_claims_and_lets_workers_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    claims = [make_claim(result_id) for result_id in (1, 2, 3)]
    for claim in claims:
        store.add(claim, due_at=0.0)
    s = make_setup(store, capacity=3, sweep_seconds=60.0)
    # fail_after counts virtual seconds here: a worker that never stops fails the test.
    with trio.fail_after(100):
        async with trio.open_nursery() as workers:
            # One worker takes the first claim and works on it for 10 s; nobody takes the rest.
            s.start_workers(workers, count=1, work_seconds=10.0)
            async with trio.open_nursery() as nursery:
                await nursery.start(s.dispatcher.run)
                await trio.sleep(1)
                nursery.cancel_scope.cancel()
            assert s.handed_back == claims[1:]
            assert s.dispatcher.busy == 1
    # The closed channel ended the worker's loop once its current attempt was over.
    assert trio.current_time() == 10.0
    assert s.received.log == [(0.0, 1)]
    assert s.dispatcher.busy == 0


async def test_cancellation_during_a_claim_closes_the_channel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = make_setup(FakeStore(claim_latency=5.0), capacity=1, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.dispatcher.run)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()

    assert s.handed_back == []
    with pytest.raises(trio.EndOfChannel):
        s.receive.receive_nowait()


async def test_a_database_outage_is_survived(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore(outages=2)
    store.add(make_claim(1), due_at=0.0)
    s = make_setup(store, capacity=1, sweep_seconds=60.0)
    with caplog.at_level(logging.WARNING, logger="bgchallenge.work.dispatcher"):
        async with trio.open_nursery() as nursery:
            s.start_workers(nursery, count=1, work_seconds=1.0)
            await nursery.start(s.dispatcher.run)
            await trio.sleep(5)
            nursery.cancel_scope.cancel()

    assert s.store.claim_times[:3] == [0.0, DATABASE_RETRY_SECONDS, 2 * DATABASE_RETRY_SECONDS]
    assert s.received.log == [(2 * DATABASE_RETRY_SECONDS, 1)]
    outage_logs = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage_logs) == 2
    assert s.dispatcher.busy == 0


async def test_a_wake_during_an_outage_retries_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore(outages=1)
    store.add(make_claim(1), due_at=0.0)
    s = make_setup(store, capacity=1, sweep_seconds=60.0)
    async with trio.open_nursery() as nursery:
        s.start_workers(nursery, count=1, work_seconds=1.0)
        await nursery.start(s.dispatcher.run)
        await trio.sleep(DATABASE_RETRY_SECONDS / 4)
        s.dispatcher.wake()
        await trio.sleep(5)
        nursery.cancel_scope.cancel()

    assert s.received.log == [(DATABASE_RETRY_SECONDS / 4, 1)]
