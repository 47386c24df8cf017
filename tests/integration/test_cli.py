"""The command line: clear errors with exit status 2 for bad arguments or settings."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.support.servers import PostgresCluster, unique_name


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
        (
            ("serve",),
            {"DATABASE_URL": "postgresql://h/d", "BGC_QUEUE": "kafka"},
            "bgchallenge: BGC_QUEUE: must be one of postgres, rabbitmq, sqs, not 'kafka'",
        ),
        (
            ("serve",),
            {"DATABASE_URL": "postgresql://h/d", "BGC_QUEUE": "sqs"},
            "bgchallenge: SQS_QUEUE_URL: not set (BGC_QUEUE=sqs needs it)",
        ),
        (
            ("dev", "--queue", "sqs"),
            {"SQS_ENDPOINT_URL": "localstack:4566"},
            "bgchallenge: SQS_ENDPOINT_URL: not an http:// or https:// URL",
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


def test_an_sqs_queue_that_does_not_answer_is_one_clear_line(
    database_url: str, s3_endpoint: str
) -> None:
    completed = run(
        "serve",
        DATABASE_URL=database_url,
        S3_ENDPOINT_URL=s3_endpoint,
        PORT="0",
        BGC_QUEUE="sqs",
        SQS_ENDPOINT_URL=s3_endpoint,
        SQS_QUEUE_URL=f"{s3_endpoint}/123456789012/no-such-queue",
    )
    assert completed.returncode == 1, completed.stderr
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("bgchallenge: QueueUnavailable: SQS get_queue_attributes: "), line
    assert "NonExistentQueue" in line


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


def test_a_failing_migration_is_one_clear_line_not_a_traceback(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DELETE FROM schema_migrations WHERE version = 2")  # so it runs again
    completed = run("migrate", DATABASE_URL=database_url)
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line.startswith("bgchallenge: MigrationFailed: migration 0002_change_numbers: ")
    assert "already exists" in line


@pytest.fixture
def weak_role(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A role that may log in and nothing else."""
    role = unique_name("bgc_weak_")
    with psycopg.connect(postgres_cluster.admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")  # our name, never input
    try:
        yield role
    finally:
        with psycopg.connect(postgres_cluster.admin_url, autocommit=True) as connection:
            connection.execute(f"DROP ROLE {role}")


def test_a_role_without_privileges_is_exit_2_and_one_clear_line(
    database_url: str, weak_role: str
) -> None:
    parts = urlsplit(database_url)
    as_weak = urlunsplit(parts._replace(netloc=f"{weak_role}@{parts.netloc.rpartition('@')[2]}"))
    completed = run("migrate", DATABASE_URL=as_weak)
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line.startswith("bgchallenge: MigrationFailed: preparing to migrate: permission denied")


def run_with_stdout(stdout: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command with stdout a pipe nobody reads any more (``| head -c0``) or closed."""
    clean = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BGC_")
    }
    command = [sys.executable, "-m", "bgchallenge", *args]
    if stdout == "closed":  # as `>&-` does: no file descriptor 1 at all
        command = ["bash", "-c", shlex.join(command) + " >&-"]
    read_end, write_end = os.pipe()
    os.close(read_end)  # before the command starts: its first write meets a broken pipe
    try:
        return subprocess.run(
            command,
            env={**clean, **env},
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("stdout", ["broken pipe", "closed"])
@pytest.mark.parametrize(
    "args",
    [
        ("submit", "--job-id", "j", "--server", "http://127.0.0.1:9"),
        ("migrate",),
        ("--help",),
    ],
    ids=["submit", "migrate", "help"],
)
def test_a_closed_stdout_ends_quietly(
    database_url: str, stdout: str, args: tuple[str, ...]
) -> None:
    """Python's recipe for SIGPIPE: no traceback, no "Exception ignored", exit 0 or 1."""
    completed = run_with_stdout(stdout, *args, DATABASE_URL=database_url)
    assert completed.stderr == ""
    assert completed.returncode in (0, 1)
