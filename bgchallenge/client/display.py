"""What ``bgchallenge submit`` shows: the URL file, live progress and the failures.

How a command-line client draws is not a rule of the service, so this lives with the client,
not in ``bgchallenge.domain``. The drawing is `rich`'s: a live progress bar with the results'
rate, ETA and the running downloads' bytes on a terminal; elsewhere (a log, a pipe) the same
columns without the bar, as whole lines at most every `PLAIN_INTERVAL_SECONDS`, and always the
last one. The rate and ETA are rich's own estimates over its recent window (30 s); results that
were already finished when the wait began are not part of the rate.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

PLAIN_INTERVAL_SECONDS = 2.0
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


def failure_rows(items: Sequence[Mapping[str, object]]) -> list[tuple[str, str, str, str]]:
    """id, url, code, message of each failed item."""
    rows = []
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
        url = without_query(str(item.get("url", "")))
        rows.append((str(item.get("id", "")), url, code, message))
    return rows


def failure_table(items: Sequence[Mapping[str, object]]) -> list[str]:
    """Aligned columns id, url, code, message for the failed items; no lines when none failed."""
    rows = [("id", "url", "code", "message"), *failure_rows(items)]
    if len(rows) == 1:
        return []
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]
        ).rstrip()
        for row in rows
    ]


def status_text(counts: Counts) -> str:
    parts = [
        f"succeeded {counts.succeeded}",
        f"failed {counts.failed}",
        f"running {counts.running}",
        f"queued {counts.queued}",
    ]
    if counts.canceled:
        parts.append(f"canceled {counts.canceled}")
    return "  ".join(parts)


class PercentColumn(ProgressColumn):
    """Rounded down, so 100% shows only once everything is done (rich's own rounds 99.5 up)."""

    def render(self, task: Task) -> Text:
        total = int(task.total or 0)
        percent = 100 if total == 0 else int(task.completed) * 100 // total
        return Text(f"{percent:3d}%")


class RateColumn(ProgressColumn):
    """Results finished per second, from rich's estimate."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("--/s" if speed is None else f"{speed:.1f}/s")


class BytesColumn(ProgressColumn):
    """The running downloads' bytes received, of their known size; empty when none moves."""

    def render(self, task: Task) -> Text:
        transfer = task.fields.get("transfer")
        return Text(f"received {transfer.text()}" if isinstance(transfer, Transfer) else "")


class EtaColumn(TimeRemainingColumn):
    """rich's time remaining, named."""

    def render(self, task: Task) -> Text:
        return Text("ETA ") + super().render(task)


def _columns() -> list[ProgressColumn]:
    return [
        PercentColumn(),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        BytesColumn(),
        RateColumn(),
        EtaColumn(),
    ]


class WaitDisplay:
    """The progress of a wait: `show` it the results' current states, as often as they change.

    On a terminal (rich's detection: ``TERM=dumb``, pipes and files are not one) a live bar
    redrawn on every `show`; elsewhere plain lines. Used as a context manager: leaving it ends
    the live display, with the last state drawn.
    """

    def __init__(
        self,
        stream: TextIO,
        total: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = PLAIN_INTERVAL_SECONDS,
        force_terminal: bool | None = None,
    ) -> None:
        self.console = Console(file=stream, force_terminal=force_terminal, highlight=False)
        self.live = self.console.is_terminal
        self.clock = clock
        self.interval = interval
        # auto_refresh off: rich would redraw from a thread of its own; every change redraws.
        self.progress = Progress(
            *_columns(),
            console=self.console,
            auto_refresh=False,
            disable=not self.live,
            get_time=clock,
        )
        self.task: TaskID = self.progress.add_task("", total=total, start=True)
        self._started = False
        self._last_line_at: float | None = None
        self._last_line = ""

    def __enter__(self) -> WaitDisplay:
        if self.live:
            self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.live:
            self.progress.stop()

    def show(self, items: Iterable[Mapping[str, object]], *, final: bool = False) -> None:
        items = list(items)
        counts = Counts.of(str(item.get("status")) for item in items)
        transfer = Transfer.of(items)
        if not self._started:
            # results already finished are the base, not part of the rate
            self.progress.reset(self.task, completed=counts.done, description=status_text(counts))
            # a sample of nothing done now: rich's rate then counts from the wait's start, not
            # from the first result finished (several downloads finishing together gave none)
            self.progress.advance(self.task, 0)
            self._started = True
        self.progress.update(
            self.task, completed=counts.done, description=status_text(counts), transfer=transfer
        )
        if self.live:
            self.progress.refresh()
            return
        now = self.clock()
        if final or self._last_line_at is None or now - self._last_line_at >= self.interval:
            self.console.print(self.plain_line(), soft_wrap=True)
            self._last_line_at = now

    def plain_line(self) -> str:
        """The columns without the bar, as one line."""
        task = self.progress.tasks[0]
        parts = []
        for column in self.progress.columns:
            if isinstance(column, BarColumn | str):
                continue
            rendered = column(task)
            text = rendered.plain if isinstance(rendered, Text) else str(rendered)
            if text.strip():
                parts.append(text.strip())
        return "  ".join(parts)


def print_report(
    stream: TextIO, job_id: str, tally: Tally, items: Sequence[Mapping[str, object]]
) -> bool:
    """The outcome after waiting, with a table of failures; answer whether the command fails.

    On a terminal the table is rich's; elsewhere the aligned plain columns scripts can split.
    """
    lines, failing = final_report(job_id, tally, items)
    console = Console(file=stream, highlight=False)
    if not console.is_terminal or len(lines) == 1:
        print("\n".join(lines), file=stream)
        return failing
    print(lines[0], file=stream)
    table = Table("id", "url", "code", "message", title="failed", title_justify="left")
    for row in failure_rows(items):
        table.add_row(*row)
    console.print(table)
    return failing
