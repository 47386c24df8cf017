"""Download progress and the attempt's one fenced write (lease + progress): pure rules, and the
lease loop that follows them under the autojump clock, against a recording stand-in for the
database."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, cast

import pytest
import trio
import trio.testing

from bgchallenge.db.repository import Attempts
from bgchallenge.domain.results import Claim, Progress
from bgchallenge.domain.transfer import ProgressMeter, Write, WriteSchedule, content_length
from bgchallenge.queues.postgres import PostgresQueue
from bgchallenge.settings import Settings
from bgchallenge.work.workers import ActiveAttempt, WorkContext, _keep_lease


@pytest.mark.parametrize(
    ("header", "length"),
    [("1234", 1234), (" 0 ", 0), (None, None), ("", None), ("-1", None), ("12x", None)],
)
def test_content_length(header: str | None, length: int | None) -> None:
    assert content_length(header) == length


def test_meter_is_null_until_the_first_byte() -> None:
    meter = ProgressMeter()
    assert meter.current is None
    meter.receive(100, 1000)
    meter.receive(50, 1000)
    assert meter.current == Progress(150, 1000)
    chunked = ProgressMeter()
    chunked.receive(7, None)
    assert chunked.current == Progress(7, None)


def test_schedule_writes_changed_progress_at_most_once_per_interval() -> None:
    schedule = WriteSchedule(lease_interval=10, progress_interval=1, now=0)
    assert schedule.tick == 1
    assert schedule.due(None, 0.5) is None  # nothing received, lease fresh
    assert schedule.due(Progress(5, None), 0.5) is None  # too soon
    first = schedule.due(Progress(5, None), 1.0)
    assert first == Write(Progress(5, None))
    schedule.wrote(first, 1.0)
    assert schedule.due(Progress(9, None), 1.5) is None  # changed, but too soon
    assert schedule.due(Progress(5, None), 5.0) is None  # unchanged: nothing to store
    # a progress write renewed the lease: the next renewal is a full interval after it
    assert schedule.due(Progress(5, None), 10.5) is None
    assert schedule.due(Progress(5, None), 11.0) == Write(None)
    # a change is stored with the lease renewal when both are due
    assert schedule.due(Progress(6, None), 11.0) == Write(Progress(6, None))


def test_a_long_progress_interval_leaves_the_lease_alone() -> None:
    schedule = WriteSchedule(lease_interval=10, progress_interval=3600, now=0)
    assert schedule.tick == 10
    assert schedule.due(Progress(5, 10), 10) == Write(None)
    schedule.wrote(Write(None), 10)
    assert schedule.due(Progress(6, 10), 3600) == Write(Progress(6, 10))


@dataclasses.dataclass
class RecordingAttempts:
    writes: list[tuple[float, Progress | None]] = dataclasses.field(default_factory=list)

    async def extend_lease(self, claim: Claim, progress: Progress | None = None) -> bool:
        self.writes.append((trio.current_time(), progress))
        await trio.sleep(0.01)  # a round trip
        return False


async def lease_writes(
    progress_seconds: float, clock: trio.testing.MockClock
) -> list[tuple[float, Progress | None]]:
    """A download receiving 1000 bytes every 0.1 s for 3.5 s, then stalling; the writes of
    30 s of the attempt's lease loop (lease 30 s: renewed every 10 s)."""
    recording = RecordingAttempts()
    none = cast(Any, None)
    settings = Settings(lease_seconds=30, progress_seconds=progress_seconds)
    queue = PostgresQueue(cast(Attempts, recording), sweep_seconds=5)
    ctx = WorkContext(cast(Attempts, recording), none, none, settings, none, queue)
    attempt = ActiveAttempt(Claim(1, "j", "https://e.com/a", "https://e.com/a", "/a", 1))
    start = trio.current_time()

    async def download() -> None:
        for _ in range(35):
            await trio.sleep(0.1)
            attempt.progress.receive(1000, 35_000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_lease, ctx, attempt)
        nursery.start_soon(download)
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    return [(round(at - start, 2), progress) for at, progress in recording.writes]


async def test_progress_written_once_a_second_while_it_moves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writes = await lease_writes(1.0, autojump_clock)
    progress = [(at, p) for at, p in writes if p is not None]
    # stored while it moves, never twice within a second, growing, and not after it stalls
    assert [p.received_bytes for _, p in progress] == sorted(p.received_bytes for _, p in progress)
    assert len(progress) == 4 and progress[-1][1] == Progress(35_000, 35_000)
    times = [at for at, _ in progress]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
    # the lease-only renewals resume a full lease interval after the last progress write
    lease_only = [at for at, p in writes if p is None]
    assert lease_only and lease_only[0] >= times[-1] + 10
    assert len(writes) == len(progress) + len(lease_only) <= 4 + 3


async def test_without_progress_writes_the_lease_is_renewed_as_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writes = await lease_writes(3600, autojump_clock)
    assert [p for _, p in writes] == [None, None]
    assert [at for at, _ in writes] == pytest.approx([10, 20.01], abs=0.02)
