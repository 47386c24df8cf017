"""ruff and mypy are part of the suite, so a lint or type error fails CI like a broken test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    completed = run(str(BIN / "ruff"), "check", "--quiet", ".")
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_mypy_is_clean() -> None:
    completed = run(str(BIN / "mypy"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
