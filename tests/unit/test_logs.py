"""The logging side of the writer thread: lines are formatted and redacted where they are
logged, and dropped (then counted in one line) rather than wait while the writer is behind."""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Iterator

import pytest

from bgchallenge.logs import JsonFormatter, NonBlockingQueueHandler

Pending = queue.Queue[logging.LogRecord | None]


@pytest.fixture
def pending() -> Pending:
    return queue.Queue(2)


@pytest.fixture
def logger(pending: Pending) -> Iterator[logging.Logger]:
    handler = NonBlockingQueueHandler(pending)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.unit.test_logs")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)


def drain(pending: Pending) -> list[dict[str, object]]:
    lines = []
    while not pending.empty():
        record = pending.get_nowait()
        assert record is not None
        lines.append(json.loads(record.getMessage()))
    return lines


def test_lines_are_formatted_and_redacted_before_they_are_queued(
    pending: Pending, logger: logging.Logger
) -> None:
    logger.info("fetched %s", "https://o.test/a.png?X-Amz-Signature=s3cr3t", extra={"id": 7})
    (line,) = drain(pending)
    assert line["event"] == "fetched https://o.test/a.png" and line["id"] == 7


def test_a_full_queue_drops_lines_then_says_how_many(
    pending: Pending, logger: logging.Logger
) -> None:
    for n in range(5):
        logger.info("line %d", n)  # returns at once although nobody takes them
    assert [line["event"] for line in drain(pending)] == ["line 0", "line 1"]
    logger.info("after")
    notice, after = drain(pending)
    assert notice["level"] == "warning" and notice["dropped"] == 3
    assert after["event"] == "after"
