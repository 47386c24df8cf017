"""One line per event on stdout: JSON objects when stdout is not a terminal, text when it is.

Every line passes through `redact_queries`, so no presigned query string reaches the logs,
whatever a library put in a message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

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


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TextFormatter() if sys.stdout.isatty() else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # hypercorn's and botocore's chatter is not our events
    for noisy in ("hypercorn.access", "botocore", "urllib3", "httpx", "httpcore", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
