"""Named SQL queries, loaded once from ``sql/queries.sql``.

The file is a series of ``-- name: x`` blocks, one query each, and ``-- fragment: y`` blocks: a
piece of SQL that queries name as ``{y}`` where it stands (the columns a client sees of a
result, listed once instead of in every query that answers results).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from bgchallenge.resources import sql_dir

_BLOCK_LINE = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` and ``-- fragment: y`` blocks into a mapping of query
    name to SQL, each ``{y}`` replaced by fragment y (comments and trailing ``;`` dropped)."""
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    pieces = _BLOCK_LINE.split(text)
    for kind, name, body in zip(pieces[1::3], pieces[2::3], pieces[3::3], strict=True):
        blocks = queries if kind == "name" else fragments
        if name in blocks:
            raise ValueError(f"{kind} {name!r} is defined twice")
        blocks[name] = body.strip()
    fragments = {
        name: "\n".join(line for line in body.splitlines() if not line.startswith("--"))
        .strip()
        .rstrip(";")
        for name, body in fragments.items()
    }

    def expand(match: re.Match[str]) -> str:
        if match.group(1) not in fragments:
            raise ValueError(f"no fragment {match.group(1)!r}")
        return fragments[match.group(1)]

    return {name: _PLACEHOLDER.sub(expand, sql) for name, sql in queries.items()}


@cache
def load_queries(path: Path | None = None) -> dict[str, str]:
    return parse_queries((path or sql_dir() / "queries.sql").read_text(encoding="utf-8"))
