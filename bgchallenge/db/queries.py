"""Named SQL queries, loaded once from ``sql/queries.sql`` (``-- name: x`` blocks)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from bgchallenge.resources import sql_dir

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into a mapping of name to SQL."""
    queries: dict[str, str] = {}
    pieces = _NAME_LINE.split(text)
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def load_queries(path: Path | None = None) -> dict[str, str]:
    return parse_queries((path or sql_dir() / "queries.sql").read_text(encoding="utf-8"))
