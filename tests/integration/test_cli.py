"""The command line: clear errors with exit status 2 for bad arguments or settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BGC_")
    }
    return subprocess.run(
        [sys.executable, "-m", "bgchallenge", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ("serve",),
            {"DATABASE_URL": "mysql://db/x"},
            "bgchallenge: DATABASE_URL: not a postgresql:// URL",
        ),
        (
            ("serve",),
            {"DATABASE_URL": "postgresql://h/d", "PORT": "http"},
            "bgchallenge: PORT: not a whole number: 'http'",
        ),
        (
            ("serve",),
            {},
            "bgchallenge: DATABASE_URL: not set"
            " (set it, or run `bgchallenge dev` for an embedded one)",
        ),
        (
            ("migrate",),
            {"DATABASE_URL": "postgresql://h/d", "BGC_WORKERS": "-1"},
            "bgchallenge: BGC_WORKERS: must be between 1 and 1000, not -1",
        ),
        (
            ("serve", "--role", "boss"),
            {"DATABASE_URL": "postgresql://h/d"},
            "bgchallenge serve: argument --role: invalid choice: 'boss'"
            " (choose from 'all', 'web', 'worker') (see --help)",
        ),
        (("fly",), {}, None),
    ],
)
def test_bad_setting_or_argument_is_exit_2_and_one_clear_line(
    args: tuple[str, ...], env: dict[str, str], line: str | None
) -> None:
    completed = run(*args, **env)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    if line is not None:
        assert lines[0] == line


def test_unreachable_database_is_one_clear_line_not_a_traceback() -> None:
    completed = run(
        "migrate", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert completed.stderr.startswith("bgchallenge: DatabaseUnavailable:")
    assert len(completed.stderr.strip().splitlines()) == 1


def test_help_everywhere() -> None:
    commands = ("serve", "migrate", "dev", "submit")
    for args in (("--help",), *((command, "--help") for command in commands)):
        completed = run(*args)
        assert completed.returncode == 0 and "usage: bgchallenge" in completed.stdout
