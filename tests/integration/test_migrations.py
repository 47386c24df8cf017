"""`bgchallenge migrate`: recorded, idempotent, safe from several processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from bgchallenge.db.migrate import load_migrations
from tests.support.servers import PostgresCluster, unique_name, with_database


@pytest.fixture
def empty_database(postgres_cluster: PostgresCluster) -> Iterator[str]:
    name = unique_name("bgc_empty_")
    with psycopg.connect(postgres_cluster.admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = with_database(postgres_cluster.admin_url, name)
    try:
        yield url
    finally:
        with psycopg.connect(postgres_cluster.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrate_process(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bgchallenge", "migrate"],
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def schema(url: str) -> tuple[list[tuple[int, str]], list[str]]:
    with psycopg.connect(url) as connection:
        versions = connection.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY table_name"
        ).fetchall()
    return [(v, n) for v, n in versions], [t for (t,) in tables]


def expected_versions() -> list[tuple[int, str]]:
    return [(m.version, m.name) for m in load_migrations()]


def test_migrate_twice_leaves_one_schema(empty_database: str) -> None:
    first = migrate_process(empty_database)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert out.startswith("applied: 0001_results")
    second = migrate_process(empty_database)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.strip() == "the schema is up to date"
    versions, tables = schema(empty_database)
    assert versions == expected_versions()
    assert "results" in tables


def test_two_processes_at_once_leave_one_schema(empty_database: str) -> None:
    processes = [migrate_process(empty_database) for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    applied = [out for out, _ in outputs if out.startswith("applied")]
    assert len(applied) == 1
    assert schema(empty_database)[0] == expected_versions()


def test_0004_cancels_results_queued_again_with_a_cancel_requested(empty_database: str) -> None:
    """Before 0004 a retry re-queued a result whose cancel had been answered 202: such rows end
    `canceled` with the migration, and no query can queue one again."""
    migrations = {m.version: m for m in load_migrations()}
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for version in sorted(v for v in migrations if v < 4):
            connection.execute(migrations[version].sql.encode())
        connection.execute(
            "INSERT INTO results (job_id, host, object_path, url, source_url, attempts,"
            " cancel_requested) VALUES ('j', 'e.com', '/a', 'https://e.com/a',"
            " 'https://e.com/a?sig=1', 1, true)"
        )
        connection.execute(migrations[4].sql.encode())
        row = connection.execute(
            "SELECT status, source_url, ended_at IS NOT NULL, canceled_at IS NOT NULL,"
            " storage_cleanup_due_at IS NOT NULL FROM results"
        ).fetchone()
        assert row == ("canceled", None, True, True, True)
        with pytest.raises(psycopg.errors.CheckViolation):
            connection.execute(
                "INSERT INTO results (job_id, host, object_path, url, cancel_requested)"
                " VALUES ('j', 'e.com', '/b', 'https://e.com/b', true)"
            )
