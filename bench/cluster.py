"""A busy cluster: 1, 2 and 4 worker processes plus two web processes on one PostgreSQL, tiny
origin bodies, an enqueue load through both web processes. Reports results/s (successes
recorded in the window), commits/s (``pg_stat_database.xact_commit``) and enqueues/s.

    python -m bench.cluster [SECONDS] [--no-star] [--database-only]

``--no-star`` adds, on a database that still has the change-number triggers of
``0002_change_numbers.sql``, a run with the ``'*'`` bump taken out of the trigger function (the
per-job bump kept): what the one row that every writer locks costs.

On a small machine the service's processes use all the CPU long before PostgreSQL's commits
are the limit, so a second table (also alone, with ``--database-only``) takes them away:
pgbench's clients write the way the service does (one result per transaction, a client-visible
change, and an insert now and then) on the same schema, with nothing else running.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import trio

from bench.common import Servers, origin_process, servers, table
from tests.support.processes import ServiceProcess

WEB_PROCESSES = 2
CONNECTIONS_PER_WEB = 4
WORKERS_PER_PROCESS = 8
WARM_UP_SECONDS = 2.0
BODY_BYTES = 64
JOBS = 16

# The trigger function of 0002 without its first statement: only the per-job number is bumped.
_JOB_ONLY_BUMP = """
CREATE OR REPLACE FUNCTION results_bump_change_numbers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO result_changes AS c (scope, change_no, last_xid)
    VALUES ('job:' || NEW.job_id, 1, pg_current_xact_id())
    ON CONFLICT (scope) DO UPDATE
        SET change_no = c.change_no + 1, last_xid = excluded.last_xid
        WHERE c.last_xid <> excluded.last_xid;
    RETURN NULL;
END
$$;
"""


# One write per transaction, as a worker's claim or outcome: a client-visible change of a
# result, and one insert in ten (an enqueue batch of one). 16 jobs, as the service load above.
_PGBENCH_SCRIPTS = {
    "update.sql@9": """
\\set id random(1, 2000)
UPDATE results SET attempts = attempts + 1, updated_at = clock_timestamp() WHERE id = :id;
""",
    "insert.sql@1": """
\\set n random(1, 1000000000)
INSERT INTO results (job_id, host, object_path, url)
VALUES ('cluster-' || (:n % 16), 'h', '/' || :n || '-' || clock_timestamp(), 'https://h/');
""",
}
PGBENCH_CLIENTS = (4, 16)


@dataclass
class Figures:
    results_per_second: float
    commits_per_second: float
    enqueues_per_second: float
    failures: int  # enqueue answers other than 201/200/409


def _design(database_url: str) -> str:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT to_regclass('result_changes') IS NOT NULL").fetchone()
    return "change numbers" if row and row[0] else "writer xid + snapshot"


def _counters(database_url: str) -> tuple[int, int]:
    """(commits so far in this database, results succeeded so far)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
            " (SELECT count(*) FROM results WHERE status = 'succeeded')"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _enqueue_load(
    bases: list[str], origin_url: str, stop: trio.Event, answers: dict[str, int]
) -> None:
    numbers = itertools.count()

    async def connection(client: httpx.AsyncClient, base: str) -> None:
        while not stop.is_set():
            n = next(numbers)
            body = {
                "jobId": f"cluster-{n % JOBS}",
                "url": f"{origin_url}/files/c{n}.png?size={BODY_BYTES}",
            }
            response = await client.post(f"{base}/results/enqueue", json=body)
            key = "accepted" if response.status_code in (200, 201, 202, 409) else "failed"
            answers[key] = answers.get(key, 0) + 1

    async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
        for base in bases:
            for _ in range(CONNECTIONS_PER_WEB):
                nursery.start_soon(connection, client, base)


async def run_cluster(
    env: Servers, origin_url: str, workers: int, seconds: float, job_only: bool
) -> Figures:
    settings = env.fresh_settings()
    url = settings.database_url
    assert url
    processes: list[ServiceProcess] = []
    try:
        # the first process migrates; the variant is applied before any other starts
        first = ServiceProcess(settings, "web")
        processes.append(first)
        bases = [(await first.wait_ready())["addresses"][0]]
        if job_only:
            with psycopg.connect(url) as connection:
                connection.execute(_JOB_ONLY_BUMP)
        for _ in range(WEB_PROCESSES - 1):
            processes.append(ServiceProcess(settings, "web"))
            bases.append((await processes[-1].wait_ready())["addresses"][0])
        for _ in range(workers):
            processes.append(
                ServiceProcess(settings, "worker", BGC_WORKERS=str(WORKERS_PER_PROCESS))
            )
        for process in processes:
            await process.wait_ready()
        answers: dict[str, int] = {}
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_enqueue_load, bases, origin_url, stop, answers)
            await trio.sleep(WARM_UP_SECONDS)
            commits, succeeded = await trio.to_thread.run_sync(_counters, url)
            enqueued = answers.get("accepted", 0)
            started = trio.current_time()
            await trio.sleep(seconds)
            commits_after, succeeded_after = await trio.to_thread.run_sync(_counters, url)
            enqueued_after = answers.get("accepted", 0)
            elapsed = trio.current_time() - started
            stop.set()
    finally:
        for process in processes:
            process.close()
    return Figures(
        (succeeded_after - succeeded) / elapsed,
        (commits_after - commits) / elapsed,
        (enqueued_after - enqueued) / elapsed,
        answers.get("failed", 0),
    )


async def migrated_database(env: Servers) -> str:
    settings = env.fresh_settings()
    assert settings.database_url
    migrate = ServiceProcess(settings, "web")  # migrates, then serves; only its schema is wanted
    try:
        await migrate.wait_ready()
    finally:
        migrate.close()
    return settings.database_url


def pgbench_commits(database_url: str, clients: int, seconds: float, job_only: bool) -> float:
    """Transactions per second of `_PGBENCH_SCRIPTS` run by ``clients`` pgbench clients."""
    with psycopg.connect(database_url) as connection:
        if job_only:
            connection.execute(_JOB_ONLY_BUMP)
        connection.execute(
            "INSERT INTO results (job_id, host, object_path, url)"
            " SELECT 'cluster-' || (n % 16), 'h', '/' || n, 'https://h/'"
            " FROM generate_series(1, 2000) AS n"
        )
    with tempfile.TemporaryDirectory() as directory:
        files = []
        for name, text in _PGBENCH_SCRIPTS.items():
            path, weight = name.split("@")
            (Path(directory) / path).write_text(text)
            files += ["-f", f"{Path(directory) / path}@{weight}"]
        output = subprocess.run(
            [
                "pgbench",
                "-n",
                "-j",
                "2",
                "-c",
                str(clients),
                "-T",
                str(round(seconds)),
                *files,
                database_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    match = re.search(r"tps = ([\d.]+)", output)
    assert match, output
    return float(match[1])


async def measure_database(env: Servers, seconds: float, no_star: bool) -> None:
    design = _design(await migrated_database(env))
    variants = [(design, False)]
    if no_star and design == "change numbers":
        variants.append(("change numbers without '*'", True))
    rows = []
    for clients in PGBENCH_CLIENTS:
        for name, job_only in variants:
            url = await migrated_database(env)
            tps = await trio.to_thread.run_sync(pgbench_commits, url, clients, seconds, job_only)
            rows.append((f"{name}, {clients} clients", f"{tps:.0f} commits/s"))
            print(rows[-1], flush=True)
    print(
        table(f"database only: pgbench, one write per transaction, {seconds:.0f} s per run", rows)
    )


async def measure(env: Servers, origin_url: str, seconds: float, no_star: bool) -> None:
    design = _design(await migrated_database(env))
    variants = [(design, False)]
    if no_star and design == "change numbers":
        variants.append(("change numbers without '*'", True))
    rows = []
    for workers in (1, 2, 4):
        for name, job_only in variants:
            figures = await run_cluster(env, origin_url, workers, seconds, job_only)
            rows.append(
                (
                    f"{name}, {workers} worker process{'es' if workers > 1 else ''}",
                    f"{figures.results_per_second:.0f} results/s, "
                    f"{figures.commits_per_second:.0f} commits/s, "
                    f"{figures.enqueues_per_second:.0f} enqueues/s"
                    + (f", {figures.failures} enqueue failures" if figures.failures else ""),
                )
            )
            print(rows[-1], flush=True)
    print(
        table(
            f"cluster: {WEB_PROCESSES} web processes ({CONNECTIONS_PER_WEB} connections each), "
            f"N worker processes of {WORKERS_PER_PROCESS} workers, {BODY_BYTES}-byte bodies, "
            f"{seconds:.0f} s per run",
            rows,
        )
    )


def main() -> None:
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds = float(arguments[0]) if arguments else 15.0
    no_star = "--no-star" in sys.argv
    with servers() as env:
        if "--database-only" not in sys.argv:
            with origin_process() as origin_url:
                trio.run(measure, env, origin_url, seconds, no_star)
        if shutil.which("pgbench"):
            trio.run(measure_database, env, seconds, no_star)
        else:
            print("no pgbench on PATH: the database-only table is left out")


if __name__ == "__main__":
    main()
