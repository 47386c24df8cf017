"""Numbered migrations from ``sql/migrations``, applied in order, once, under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bgchallenge.db.database import Connection, Database
from bgchallenge.resources import sql_dir

# Any constant shared by every process of this service; it serialises concurrent migrators.
MIGRATION_LOCK_KEY = 0x6263_6D69  # "bcmi"
_FILE_NAME = re.compile(r"^(\d{4})_([\w-]+)\.sql$")
# SQLSTATEs that mean the settings are wrong (the role may not do this, or the database or
# schema is not the one meant), not that a migration is: insufficient privilege, invalid
# authorization (class 28), invalid catalog or schema name.
_SETTINGS_STATES = ("42501", "28", "3D000", "3F000")


class MigrationFailed(Exception):
    """PostgreSQL refused a statement of the migration; ``str()`` is one line."""

    def __init__(self, message: str, *, bad_setting: bool) -> None:
        super().__init__(message)
        self.bad_setting = bad_setting


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir() / "migrations"
    migrations = []
    for path in sorted(directory.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match:
            migrations.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {directory}")
    return migrations


async def migrate(database: Database) -> list[str]:
    """Apply every migration not yet recorded; answer the names applied now."""
    migrations = load_migrations()
    step = "preparing to migrate"  # what was being done, for the error

    async def work(connection: Connection) -> list[str]:
        nonlocal step
        applied_now: list[str] = []
        await connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await connection.execute("SELECT version FROM schema_migrations")
            done = {row["version"] for row in await cursor.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                step = f"migration {migration.version:04d}_{migration.name}"
                async with connection.transaction():
                    await connection.execute(migration.sql.encode())
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied_now.append(f"{migration.version:04d}_{migration.name}")
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        return applied_now

    try:
        return await database.with_connection(work)
    except psycopg.Error as exc:  # connection failures are DatabaseUnavailable already
        state = exc.sqlstate or ""
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise MigrationFailed(
            f"{step}: {first_line} (SQLSTATE {state or 'unknown'})",
            bad_setting=bool(state) and state.startswith(_SETTINGS_STATES),
        ) from exc
