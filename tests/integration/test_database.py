"""The database edge: a transaction that loses a deadlock is run again; only a failure of the
connection itself is "database unavailable"."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from bgchallenge.db.database import DatabaseUnavailable, open_database
from bgchallenge.db.repository import Results
from bgchallenge.domain.enqueue import parse_enqueue_body
from tests.conftest import IO_GUARD_SECONDS
from tests.support.results import eventually, fetch_rows

INSERT = (
    "INSERT INTO results (job_id, host, object_path, url) "
    "VALUES ('job', 'cdn.example.com', %s, 'https://cdn.example.com' || %s)"
)


def waiting_on_a_lock(database_url: str, other_pid: int) -> bool:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> %s",
            (other_pid,),
        ).fetchone()
    return row is not None and row[0] > 0


async def test_an_enqueue_that_loses_a_deadlock_is_run_again(database_url: str) -> None:
    """Another transaction holds /b.png and then asks for /a.png while the batch, which took
    /a.png, waits for /b.png: PostgreSQL aborts the batch (it waited first, so its deadlock
    check runs first). The batch is run again instead of failing as "unavailable"."""
    requests = [
        parse_enqueue_body(f'{{"jobId": "job", "url": "https://cdn.example.com/{name}"}}'.encode())
        for name in ("a.png", "b.png")
    ]
    with trio.fail_after(IO_GUARD_SECONDS):
        other: psycopg.Connection[Any] = await trio.to_thread.run_sync(
            psycopg.connect, database_url
        )
        try:
            # the batch must be the one the deadlock check picks
            await trio.to_thread.run_sync(other.execute, "SET deadlock_timeout = '20s'")
            await trio.to_thread.run_sync(other.execute, INSERT, ("/b.png", "/b.png"))
            async with open_database(database_url) as database, trio.open_nursery() as nursery:
                answers = []

                async def enqueue() -> None:
                    answers.extend(await Results(database).enqueue_many(requests))

                nursery.start_soon(enqueue)
                await eventually(lambda: waiting_on_a_lock(database_url, other.info.backend_pid))
                # blocks until PostgreSQL breaks the deadlock by aborting the batch
                await trio.to_thread.run_sync(other.execute, INSERT, ("/a.png", "/a.png"))
                await trio.to_thread.run_sync(other.commit)
        finally:
            await trio.to_thread.run_sync(other.close)
    assert [(a.result.object_path, a.created) for a in answers] == [
        ("/a.png", False),
        ("/b.png", False),
    ]
    assert len(fetch_rows(database_url)) == 2


async def test_a_batch_inserts_in_identity_order(database_url: str) -> None:
    """Two batches holding the same identities take their locks in the same order, so they
    wait for each other instead of deadlocking: ids follow the identities, not the batch."""
    requests = [
        parse_enqueue_body(f'{{"jobId": "{job}", "url": "https://{host}/{name}"}}'.encode())
        for job, host, name in [
            ("j2", "a.example", "a.png"),
            ("j1", "b.example", "b.png"),
            ("j1", "a.example", "b.png"),
            ("j1", "a.example", "a.png"),
            ("j1", "a.example", "a.png"),  # a repeat: answered with the first's row
        ]
    ]
    async with open_database(database_url) as database:
        answers = await Results(database).enqueue_many(requests)
    by_id = sorted(answers[:4], key=lambda a: a.result.id)
    assert [(a.result.job_id, a.result.url) for a in by_id] == [
        ("j1", "https://a.example/a.png"),
        ("j1", "https://a.example/b.png"),
        ("j1", "https://b.example/b.png"),
        ("j2", "https://a.example/a.png"),
    ]
    assert [a.created for a in answers] == [True, True, True, True, False]
    assert answers[4].result.id == answers[3].result.id


async def test_an_error_of_the_statement_is_not_unavailable(database_url: str) -> None:
    async with open_database(database_url) as database:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            await database.with_connection(
                lambda connection: connection.execute("SELECT no_such_column FROM results")
            )
        with pytest.raises(psycopg.errors.QueryCanceled):

            async def timed_out(connection: Any) -> None:
                await connection.execute("SET statement_timeout = '10ms'")
                await connection.execute("SELECT pg_sleep(1)")

            await database.with_connection(timed_out)


async def test_a_lost_connection_is_unavailable(database_url: str) -> None:
    async with open_database(database_url) as database:

        async def killed(connection: Any) -> None:
            await connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        with pytest.raises(DatabaseUnavailable):
            await database.with_connection(killed)


@pytest.mark.parametrize(
    ("claimed", "expected"),
    [
        pytest.param("running", ("running", True), id="claimed-meanwhile"),
        pytest.param("succeeded", ("succeeded", False), id="ended-meanwhile"),
    ],
)
async def test_a_cancel_that_waited_for_a_writer_answers_what_the_writer_committed(
    database_url: str, claimed: str, expected: tuple[str, bool]
) -> None:
    """A cancel of a queued result waits for the row while a worker's write holds it; what it
    then answers and changes follows the committed write (the statement's snapshot, taken
    before the wait, still shows the result queued)."""
    with trio.fail_after(IO_GUARD_SECONDS):
        other: psycopg.Connection[Any] = await trio.to_thread.run_sync(
            psycopg.connect, database_url
        )
        try:
            row = await trio.to_thread.run_sync(
                lambda: other.execute(INSERT + " RETURNING id", ("/c.png", "/c.png")).fetchone()
            )
            await trio.to_thread.run_sync(other.commit)
            assert row is not None
            result_id = row[0]
            await trio.to_thread.run_sync(
                other.execute,
                "UPDATE results SET status = %(status)s, attempts = 1, started_at = now(),"
                " lease_owner = CASE WHEN %(status)s = 'running' THEN 'w' END,"
                " lease_expires_at = CASE WHEN %(status)s = 'running' THEN now() + '1h' END,"
                " ended_at = CASE WHEN %(status)s = 'succeeded' THEN now() END WHERE id = %(id)s",
                {"status": claimed, "id": result_id},
            )
            async with open_database(database_url) as database, trio.open_nursery() as nursery:
                answers = []

                async def cancel() -> None:
                    answers.append(await Results(database).cancel(result_id))

                nursery.start_soon(cancel)
                await eventually(lambda: waiting_on_a_lock(database_url, other.info.backend_pid))
                await trio.to_thread.run_sync(other.commit)
        finally:
            await trio.to_thread.run_sync(other.close)
    (answer,) = answers
    assert answer is not None
    assert (answer.result.status.value, answer.requested) == expected
    (stored,) = fetch_rows(database_url)
    assert (stored["status"], stored["cancel_requested"]) == expected


async def test_a_worker_statement_cancelled_while_waiting_for_a_thread_gives_up_at_once(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With every statement thread busy, a cancelled caller has started no thread: it stops
    waiting at once, with nothing to cancel on the server and nothing left behind."""
    with trio.fail_after(IO_GUARD_SECONDS):
        async with open_database(database_url, max_size=2) as database:
            database._queries["slow"] = "SELECT pg_sleep(1)"  # a query of the test's own
            async with trio.open_nursery() as nursery:
                for _ in range(2):  # both threads busy for a second
                    nursery.start_soon(database.fetch_all_in_thread, "slow")
                await trio.sleep(0.2)
                with trio.move_on_after(0.1) as waiting:
                    await database.fetch_all_in_thread("ping")
                given_up = trio.current_time()
            assert waiting.cancelled_caught
            assert trio.current_time() - given_up > 0.5  # the slow ones ran to their end
    assert not [r for r in caplog.records if "left behind" in r.getMessage()]
