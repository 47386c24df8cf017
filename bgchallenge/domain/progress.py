"""What ``bgchallenge submit`` shows: the URL file, progress, rate, ETA and failures.

Pure: no I/O and no clock; times and the writer are passed in, so every rule is unit-tested.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

BAR_WIDTH = 30
RATE_WINDOW_SECONDS = 30.0
NON_TTY_INTERVAL_SECONDS = 2.0
MESSAGE_WIDTH = 100


@dataclass(frozen=True)
class UrlLine:
    number: int  # 1-based, counting skipped lines too, so it matches the user's editor
    url: str


def parse_url_lines(text: str) -> list[UrlLine]:
    """One URL per line; blank lines and ``#`` comments skipped, surrounding whitespace stripped."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        url = raw.strip()
        if url and not url.startswith("#"):
            lines.append(UrlLine(number, url))
    return lines


def without_query(url: str) -> str:
    """The URL safe to print: a presigned URL's query string and fragment are credentials."""
    return url.split("?", 1)[0].split("#", 1)[0]


def field_problems(problem: Mapping[str, object]) -> str:
    """``url must be ...`` from a 400 problem's ``errors``, else its ``detail``."""
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(
            f"{str(e.get('pointer', '')).removeprefix('#/')} {e.get('detail', '')}".strip()
            for e in errors
            if isinstance(e, Mapping)
        )
    return str(problem.get("detail") or "rejected")


def rejection_line(line: UrlLine, problem: str) -> str:
    return f"bgchallenge: line {line.number}: {without_query(line.url)[:200]}: {problem}"


@dataclass(frozen=True)
class Counts:
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    running: int = 0
    queued: int = 0

    @classmethod
    def of(cls, statuses: Iterable[str]) -> Counts:
        seen = Counter(statuses)
        return cls(
            seen["succeeded"], seen["failed"], seen["canceled"], seen["running"], seen["queued"]
        )

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.canceled

    @property
    def total(self) -> int:
        return self.done + self.running + self.queued

    @property
    def remaining(self) -> int:
        return self.running + self.queued


class RateMeter:
    """Results finished per second over a recent window, so the ETA follows the current pace.

    Results already terminal when the meter starts do not count: the first sample is the base.
    """

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        self._samples.append((now, done))
        # keep one sample at or before the window's start, so the window is always covered
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float | None:
        """None until there are two samples at different times."""
        if len(self._samples) < 2:
            return None
        (first_at, first_done), (last_at, last_done) = self._samples[0], self._samples[-1]
        if last_at <= first_at:
            return None
        return max(0, last_done - first_done) / (last_at - first_at)


def eta_seconds(remaining: int, rate: float | None) -> float | None:
    if remaining == 0:
        return 0.0
    if not rate:
        return None
    return remaining / rate


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def render_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####-----]  50%``; rounded down, so 100% shows only once everything is done."""
    percent = 100 if total == 0 else done * 100 // total
    filled = width if total == 0 else done * width // total
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:3d}%"


def format_bytes(size: int) -> str:
    """``512 B``, ``12.3 MiB``: binary units, one decimal."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


@dataclass(frozen=True)
class Transfer:
    """The bytes of the running results: received so far, of the known size."""

    received: int
    known: int  # the totals the origins announced, plus what arrived of bodies without one
    unknown: bool  # some body came without a size: ``known`` is a lower bound

    @classmethod
    def of(cls, items: Iterable[Mapping[str, object]]) -> Transfer | None:
        """None when no running result has received a byte yet."""
        received = known = 0
        unknown = seen = False
        for item in items:
            progress = item.get("progress")
            if item.get("status") != "running" or not isinstance(progress, Mapping):
                continue
            got, total = progress.get("receivedBytes"), progress.get("totalBytes")
            if not isinstance(got, int):
                continue
            seen = True
            received += got
            if isinstance(total, int):
                known += max(total, got)
            else:
                known += got
                unknown = True
        return cls(received, known, unknown) if seen else None

    def text(self) -> str:
        size = format_bytes(self.known) + ("+" if self.unknown else "")
        return f"{format_bytes(self.received)} of {size}"


def progress_line(
    counts: Counts, rate: float | None, eta: float | None, transfer: Transfer | None = None
) -> str:
    parts = [
        render_bar(counts.done, counts.total),
        f"{counts.done}/{counts.total}",
        f"succeeded {counts.succeeded}",
        f"failed {counts.failed}",
        f"running {counts.running}" + (f" ({transfer.text()})" if transfer else ""),
        f"queued {counts.queued}",
    ]
    if counts.canceled:
        parts.append(f"canceled {counts.canceled}")
    parts.append("--/s" if rate is None else f"{rate:.1f}/s")
    parts.append(f"ETA {format_duration(eta)}")
    return "  ".join(parts)


class ProgressPrinter:
    """Redraws one line with ``\\r`` on a terminal; elsewhere prints a line at most every
    ``interval`` seconds, and always the final one, so logs stay readable."""

    def __init__(
        self, write: Callable[[str], None], tty: bool, interval: float = NON_TTY_INTERVAL_SECONDS
    ) -> None:
        self.write = write
        self.tty = tty
        self.interval = interval
        self._last_at: float | None = None
        self._last_width = 0

    def show(self, line: str, now: float, *, final: bool = False) -> None:
        if self.tty:
            # pad over the previous, longer line instead of relying on terminal escapes
            padding = " " * max(0, self._last_width - len(line))
            self.write("\r" + line + padding + ("\n" if final else ""))
            self._last_width = len(line)
            return
        if final or self._last_at is None or now - self._last_at >= self.interval:
            self.write(line + "\n")
            self._last_at = now


@dataclass(frozen=True)
class Tally:
    enqueued: int = 0
    duplicates: int = 0
    rejected: int = 0


def enqueue_summary(job_id: str, tally: Tally) -> str:
    return (
        f"job {job_id}: {tally.enqueued} enqueued, {tally.duplicates} already enqueued,"
        f" {tally.rejected} rejected"
    )


def outcome_summary(job_id: str, counts: Counts) -> str:
    return (
        f"job {job_id}: {counts.succeeded} succeeded, {counts.failed} failed,"
        f" {counts.canceled} canceled"
    )


def final_report(
    job_id: str, tally: Tally, items: Sequence[Mapping[str, object]]
) -> tuple[list[str], bool]:
    """The lines after waiting, and whether the command fails: a result failed, or a URL was
    rejected at enqueue. Canceled results are counted but do not fail it."""
    counts = Counts.of(str(item.get("status")) for item in items)
    lines = [outcome_summary(job_id, counts), *failure_table(items)]
    return lines, bool(counts.failed or tally.rejected)


def failure_table(items: Sequence[Mapping[str, object]]) -> list[str]:
    """Aligned columns id, url, code, message for the failed items; no lines when none failed."""
    rows = [("id", "url", "code", "message")]
    for item in items:
        if item.get("status") != "failed":
            continue
        error = item.get("error")
        code, message = "", ""
        if isinstance(error, Mapping):
            code = str(error.get("code", ""))
            message = " ".join(str(error.get("message", "")).split())
        if len(message) > MESSAGE_WIDTH:
            message = message[: MESSAGE_WIDTH - 1] + "…"
        rows.append((str(item.get("id", "")), str(item.get("url", "")), code, message))
    if len(rows) == 1:
        return []
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]
        ).rstrip()
        for row in rows
    ]
