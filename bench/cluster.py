"""A busy cluster: 1, 2 and 4 worker processes plus two web processes on one PostgreSQL, tiny
origin bodies, an enqueue load through both web processes. Reports results/s (successes
recorded in the window), commits/s (``pg_stat_database.xact_commit``) and enqueues/s.

    python -m bench.cluster [SECONDS] [--no-star]

``--no-star`` adds, on a database that still has the change-number triggers of
``0002_change_numbers.sql``, a run with the ``'*'`` bump taken out of the trigger function (the
per-job bump kept): what the one row that every writer locks costs.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass

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


async def measure(env: Servers, origin_url: str, seconds: float, no_star: bool) -> None:
    probe = env.fresh_settings()
    assert probe.database_url
    migrate = ServiceProcess(probe, "web")  # migrates, then serves; only its schema is wanted
    try:
        await migrate.wait_ready()
    finally:
        migrate.close()
    design = _design(probe.database_url)
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


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds = float(arguments[0]) if arguments else 15.0
    with servers() as env, origin_process() as origin_url:
        trio.run(measure, env, origin_url, seconds, "--no-star" in sys.argv)
