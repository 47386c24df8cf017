"""Real servers on loopback for the tests: PostgreSQL databases, S3 buckets, the service."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import trio

from bgchallenge.db.database import open_database
from bgchallenge.db.migrate import migrate
from bgchallenge.embedded import start_postgres

_names = itertools.count()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def unique_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


def migrate_url(url: str) -> list[str]:
    async def run() -> list[str]:
        async with open_database(url, max_size=2) as database:
            return await migrate(database)

    return trio.run(run)


class PostgresCluster:
    """A PostgreSQL server: makes a migrated template once, then a fresh database per test."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = unique_name("bgc_template_")
        self._admin("CREATE DATABASE {}", self.template)
        migrate_url(with_database(admin_url, self.template))

    def _admin(self, statement: str, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(statement.format(name))  # names are ours, never input

    def create_database(self) -> str:
        name = unique_name("bgc_test_")
        self._admin(f"CREATE DATABASE {{}} TEMPLATE {self.template}", name)
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def close(self) -> None:
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.template)


@dataclass
class PrivatePostgres:
    """An embedded PostgreSQL of one test's own, so the test may stop and start it."""

    data_dir: Path
    handle: Any = None
    running: bool = False

    @property
    def url(self) -> str:
        return str(self.handle.get_uri())

    def start(self) -> None:
        if self.handle is None:
            self.handle = start_postgres(self.data_dir)
        elif not self.running:
            self._pg_ctl(
                "-w",
                "-o",
                "-h ''",
                "-o",
                f"-k {self.socket_dir}",
                "-l",
                str(self.data_dir / "log"),
                "start",
            )
        self.running = True

    @property
    def socket_dir(self) -> str:
        return str(self.handle.get_postmaster_info().socket_dir)

    def stop(self) -> None:
        if self.running:
            self._pg_ctl("-w", "-m", "fast", "stop")
            self.running = False

    def _pg_ctl(self, *args: str) -> None:
        # pgserver creates its command wrappers at import, out of mypy's sight.
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.data_dir, user=self.handle.system_user, timeout=60)


@contextmanager
def private_postgres(data_dir: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
