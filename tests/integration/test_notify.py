"""The insert and its NOTIFY commit together: a listener hears one notification per committing
transaction (a constant payload, so PostgreSQL folds a batch's into one), and nothing else."""

from __future__ import annotations

import psycopg
import pytest
import trio

from bgchallenge.service import Role
from tests.conftest import IO_GUARD_SECONDS, RunningService


@pytest.fixture
def role() -> Role:
    return Role.WEB  # no workers: their retries would NOTIFY too


def listen(database_url: str) -> psycopg.Connection:
    connection = psycopg.connect(database_url, autocommit=True)
    connection.execute("LISTEN bgc_results")
    return connection


def drain(connection: psycopg.Connection, seconds: float) -> list[str]:
    return [n.payload for n in connection.notifies(timeout=seconds)]


async def test_listener_is_woken_and_not_for_a_rejected_request(
    service: RunningService, database_url: str
) -> None:
    listener = listen(database_url)
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            accepted = await service.client.post(
                "/results/enqueue", json={"jobId": "j", "url": "https://e.com/a.png"}
            )
            assert accepted.status_code == 202
            heard = await trio.to_thread.run_sync(drain, listener, 1.0)
            assert heard == [""]

            duplicate = await service.client.post(
                "/results/enqueue", json={"jobId": "j", "url": "https://e.com/a.png?again"}
            )
            invalid = await service.client.post("/results/enqueue", json=[1])
            assert (duplicate.status_code, invalid.status_code) == (409, 400)
            assert await trio.to_thread.run_sync(drain, listener, 1.0) == []
    finally:
        listener.close()


async def test_a_rolled_back_insert_wakes_nobody(database_url: str) -> None:
    listener = listen(database_url)
    try:
        with psycopg.connect(database_url) as writer:
            writer.execute(
                "INSERT INTO results (job_id, host, object_path, url) "
                "VALUES ('j', 'e.com', '/a', 'https://e.com/a')"
            )
            writer.rollback()
        with trio.fail_after(IO_GUARD_SECONDS):
            assert await trio.to_thread.run_sync(drain, listener, 0.5) == []
    finally:
        listener.close()


async def test_a_batch_of_inserts_sends_one_notification(database_url: str) -> None:
    listener = listen(database_url)
    try:
        with psycopg.connect(database_url) as writer:
            writer.execute(
                "INSERT INTO results (job_id, host, object_path, url) "
                "SELECT 'j', 'e.com', '/' || n, 'https://e.com/' || n "
                "FROM generate_series(1, 500) AS n"
            )
        with trio.fail_after(IO_GUARD_SECONDS):
            assert await trio.to_thread.run_sync(drain, listener, 0.5) == [""]
    finally:
        listener.close()
