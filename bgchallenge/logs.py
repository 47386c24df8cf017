"""One line per event on stdout: JSON objects when stdout is not a terminal, text when it is.

Every line passes through `redact_queries`, so no presigned query string reaches the logs,
whatever a library put in a message.

Lines are formatted (and redacted) where they are logged, then written by a
`QueueListener` thread: a slow reader of stdout must not stall the Trio thread (lease
renewals, HTTP answers). Whoever calls `configure_logging` owns that thread and stops it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
from datetime import UTC, datetime
from typing import Any, cast

from bgchallenge.domain.paths import redact_queries

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact_queries(json.dumps(line, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        text = f"{record.levelname.lower():7} {record.getMessage()}" + (
            f"  {extras}" if extras else ""
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact_queries(text)


# Lines waiting for the writer; beyond this, lines are dropped (and counted) rather than let
# the Trio thread wait for stdout or memory grow without bound while nobody reads it.
MAX_PENDING_LINES = 10_000
# Once the writer has written every queued line, it waits this long before it waits for the
# next one (see `StdoutWriter.dequeue`).
GATHER_SECONDS = 0.05


class _AsPrepared(logging.Formatter):
    """The writer's side: the line was formatted and redacted when it was logged."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class NonBlockingQueueHandler(logging.handlers.QueueHandler):
    """Formats on the caller's thread (`prepare`), never waits for room in the queue."""

    def __init__(self, pending: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(pending)
        self.dropped = 0
        self.writer: StdoutWriter | None = None

    def close(self) -> None:
        # `logging.shutdown()` closes every handler: also on the way out through `os._exit`
        # (a second signal), where no `finally` runs, the lines still queued are written.
        super().close()
        if self.writer is not None:
            self.writer.stop()

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                notice = logging.makeLogRecord(
                    {
                        "name": __name__,
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": "log lines dropped: stdout was not read fast enough",
                        "dropped": self.dropped,
                    }
                )
                self.queue.put_nowait(self.prepare(notice))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class StdoutWriter(logging.handlers.QueueListener):
    """The thread that writes log lines to stdout; `stop` writes every line still queued.

    A thread, despite the house rule against bare threads: the write to stdout blocks, and
    `QueueListener` is the standard library's mechanism for taking it off the thread that
    logs. Its lifetime is the command's: the CLI starts it before `trio.run` and stops (joins)
    it after, so no line logged before exit is lost.
    """

    def __init__(
        self, pending: queue.Queue[logging.LogRecord | None], lines: logging.Formatter
    ) -> None:
        self.out = logging.StreamHandler(sys.stdout)
        self.out.setFormatter(_AsPrepared())
        super().__init__(pending, self.out)
        self.pending = pending
        self.lines = lines
        self.gathering = threading.Event()  # never set: `dequeue` waits on it with a timeout

    def dequeue(self, block: bool) -> logging.LogRecord:
        """The next line. When there is none, the writer first waits `GATHER_SECONDS` without
        waiting on the queue, then on it: a line queued while nobody waits on the queue wakes
        no thread, so a busy service wakes the writer once per gathering, not once per line
        (under load, waking it per line was ~9 % of the samples of a worker process busy in
        `bench.throughput`, bench/README.md)."""
        try:
            line = self.pending.get_nowait()
        except queue.Empty:
            self.gathering.wait(GATHER_SECONDS)
            line = self.pending.get(block)
        return cast(logging.LogRecord, line)  # or None, the sentinel, as in the base class

    def enqueue_sentinel(self) -> None:
        # None is QueueListener's sentinel; it waits for room behind every line still queued
        self.pending.put(None)

    def stop(self) -> None:
        if self._thread is None:  # stopped already
            return
        # Whatever is logged from here on (at interpreter shutdown) is written directly.
        direct = logging.StreamHandler(sys.stdout)
        direct.setFormatter(self.lines)
        logging.getLogger().handlers[:] = [direct]
        super().stop()
        self.out.flush()


def configure_logging(
    level: int = logging.INFO, *, max_pending: int = MAX_PENDING_LINES
) -> StdoutWriter:
    """Route every log line to stdout through a writer thread; the caller must `stop` it."""
    lines = TextFormatter() if sys.stdout.isatty() else JsonFormatter()
    pending: queue.Queue[logging.LogRecord | None] = queue.Queue(max_pending)
    enqueue = NonBlockingQueueHandler(pending)
    enqueue.setFormatter(lines)
    root = logging.getLogger()
    root.handlers[:] = [enqueue]
    root.setLevel(level)
    # hypercorn's and botocore's chatter is not our events
    for noisy in ("hypercorn.access", "botocore", "urllib3", "httpx", "httpcore", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    writer = enqueue.writer = StdoutWriter(pending, lines)
    writer.start()
    return writer
