"""One attempt's download progress, and when the attempt's fenced write is due.

An attempt keeps its lease with one fenced write (sql/queries.sql, extend_lease), which also
stores the progress when there is new progress to store: so a progress write renews the lease
as well, and a lease renewal that falls due right after one is skipped. Pure: the caller passes
the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgchallenge.domain.results import Progress


def content_length(header: str | None) -> int | None:
    """The announced body length; None when absent (a chunked body) or not a length."""
    if header is None or not header.strip().isdigit():
        return None
    return int(header)


class ProgressMeter:
    """The bytes received so far by one attempt; fed by the download stream."""

    def __init__(self) -> None:
        self._received = 0
        self._total: int | None = None
        self._started = False

    def receive(self, size: int, total: int | None) -> None:
        self._received += size
        self._total = total
        self._started = True

    @property
    def current(self) -> Progress | None:
        """None until the first byte arrived."""
        return Progress(self._received, self._total) if self._started else None


@dataclass(frozen=True)
class Write:
    progress: Progress | None  # None: the lease only


class WriteSchedule:
    """When to extend the lease (every ``lease_interval``) and when to store progress (when it
    changed, at most once per ``progress_interval``); either write does both."""

    def __init__(self, lease_interval: float, progress_interval: float, now: float) -> None:
        self.lease_interval = lease_interval
        self.progress_interval = progress_interval
        self._lease_at = now
        self._progress_at = now
        self._written: Progress | None = None

    @property
    def tick(self) -> float:
        """How often to ask `due`."""
        return min(self.lease_interval, self.progress_interval)

    def due(self, progress: Progress | None, now: float) -> Write | None:
        if (
            progress is not None
            and progress != self._written
            and now - self._progress_at >= self.progress_interval
        ):
            return Write(progress)
        if now - self._lease_at >= self.lease_interval:
            return Write(None)
        return None

    def wrote(self, write: Write, now: float) -> None:
        self._lease_at = now
        if write.progress is not None:
            self._written = write.progress
            self._progress_at = now
