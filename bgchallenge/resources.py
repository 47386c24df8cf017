"""Where the project's SQL files are: beside the package when installed, the repo's otherwise."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def sql_dir() -> Path:
    installed = _PACKAGE / "sql"
    return installed if installed.is_dir() else _PACKAGE.parent / "sql"
