"""Work interrupted at the worst moments: worker processes killed at every stage of an upload,
and a claim cancelled after PostgreSQL committed it. Nothing may stay behind: a result that is
not `succeeded` has no object and no open multipart upload, and no claim is lost."""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Iterator

import psycopg
import pytest
import trio

from bgchallenge.db.database import open_database
from bgchallenge.db.repository import Attempts, Results
from bgchallenge.domain.keys import object_key
from bgchallenge.domain.results import Claim, Status
from bgchallenge.domain.retry import max_attempts
from bgchallenge.settings import Settings
from bgchallenge.work.dispatcher import Dispatcher
from bgchallenge.work.workers import run_attempt, sweep_storage
from tests.conftest import IO_GUARD_SECONDS
from tests.support.attempts import worker_context
from tests.support.origin import Origin
from tests.support.processes import ServiceProcess
from tests.support.proxy import postgres_proxy
from tests.support.results import Bucket, eventually, fetch_rows, insert_results

MIB = 1024 * 1024
# The stages a worker process is killed at, by the body its origin serves:
STAGES: dict[str, dict[str, object]] = {
    # still downloading the first part: nothing in the bucket yet
    "before-first-part.png": {"size": 8 * MIB, "slow": 0.5},
    # a part uploaded, the multipart upload open
    "mid-multipart.png": {"size": 8 * MIB, "slow": 0.03},
    # the whole object stored, the success not written (the database is frozen by then)
    "after-last-byte.png": {"size": 6 * MIB, "slow": 0.01},
}


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.close()
        print(f"--- log of service process {process.pid}:\n{process.logs()[-4000:]}")


def leftovers(bucket: Bucket, keys: list[str]) -> list[str]:
    """What the bucket still holds under these keys: objects and open multipart uploads."""
    found = [f"object {key}" for key in bucket.object_keys() if key in keys]
    for key in keys:
        listing = bucket.client.list_multipart_uploads(Bucket=bucket.name, Prefix=key)
        found += [f"upload {u['Key']}" for u in listing.get("Uploads", [])]
    return found


def set_attempts(database_url: str, attempts: int) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute("UPDATE results SET attempts = %s", (attempts,))


@pytest.mark.parametrize("then", ["permanent-failure", "transient-until-exhausted", "reaper"])
async def test_results_of_killed_workers_that_then_fail_leave_nothing_in_the_bucket(
    then: str,
    processes: list[ServiceProcess],
    settings: Settings,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
) -> None:
    bucket_state = Bucket(s3_endpoint, bucket)
    names = list(STAGES)
    with trio.fail_after(IO_GUARD_SECONDS * 3):
        insert_results(database_url, [origin.url(name, **STAGES[name]) for name in names])
        if then == "reaper":  # the attempt that is killed is the last one allowed
            set_attempts(database_url, max_attempts(settings.retry_delays) - 1)
        rows = fetch_rows(database_url)
        keys = [object_key(row["id"], row["object_path"]) for row in rows]
        async with postgres_proxy(database_url) as proxy:
            own = dataclasses.replace(settings, database_url=proxy.url)
            doomed = ServiceProcess(own, "worker", BGC_WORKERS="4", BGC_LEASE_SECONDS="2")
            processes.append(doomed)
            await doomed.wait_ready()
            await eventually(lambda: all(origin.gets(name) == 1 for name in names))
            # Every result is claimed and downloading: from now on the worker process reaches
            # the bucket but not the database, so the last result's success is never written.
            proxy.freeze()
            await eventually(lambda: keys[2] in bucket_state.object_keys())
            await eventually(lambda: keys[1] in bucket_state.uploads())
            doomed.send(signal.SIGKILL)
            await doomed.wait_exit()
        # the stages were the intended ones: nothing of the first, a part of the second
        assert [key for key in bucket_state.uploads() if key in (keys[0], keys[2])] == []
        assert keys[0] not in bucket_state.object_keys()
        assert [row["status"] for row in fetch_rows(database_url)] == ["running"] * 3

        for name in names:
            if then == "permanent-failure":
                origin.override(name, status=404)
            elif then == "transient-until-exhausted":
                origin.override(name, status=503)
        survivor = ServiceProcess(settings, "worker", BGC_LEASE_SECONDS="2")
        processes.append(survivor)
        await survivor.wait_ready()

        def clean() -> bool:
            ended = fetch_rows(database_url, "status = 'failed' AND storage_cleanup_due_at IS NULL")
            return len(ended) == 3 and leftovers(bucket_state, keys) == []

        await eventually(clean, interval=0.2)
    rows = fetch_rows(database_url)
    expected = "not_found" if then == "permanent-failure" else "exhausted"
    assert [(row["status"], row["error_code"]) for row in rows] == [("failed", expected)] * 3
    assert [row["attempts"] for row in rows] == (
        [2] * 3 if then == "permanent-failure" else [max_attempts(settings.retry_delays)] * 3
    )
    assert "Traceback" not in survivor.logs()


@pytest.mark.parametrize("in_threads", [False, True], ids=["trio-asyncio", "threads"])
async def test_a_claim_cancelled_after_its_commit_is_handed_back_at_once(
    settings: Settings, database_url: str, in_threads: bool
) -> None:
    insert_results(database_url, ["http://127.0.0.1:9/files/a.png"])
    handed_back: list[Status | None] = []
    with trio.fail_after(IO_GUARD_SECONDS):
        async with (
            postgres_proxy(database_url) as proxy,
            open_database(proxy.url, max_size=2) as database,
        ):
            # no lease expires in this test
            attempts = Attempts(database, "test-owner", 600.0, in_threads=in_threads)
            send, receive = trio.open_memory_channel[Claim](0)

            async def hand_back(claim: Claim) -> None:
                handed_back.append(await attempts.hand_back(claim))

            dispatcher = Dispatcher(
                attempts, send, capacity=1, sweep_seconds=60.0, hand_back=hand_back
            )
            stopped = trio.Event()
            scope = trio.CancelScope()

            async def dispatch() -> None:
                with scope:
                    await dispatcher.run()
                stopped.set()

            async with receive, trio.open_nursery() as nursery:
                assert await attempts.claim_due(0) == []  # the claims' connection, made now
                proxy.to_client.freeze()  # the claim commits; its answer is held
                nursery.start_soon(dispatch)
                await eventually(lambda: fetch_rows(database_url)[0]["status"] == "running")
                scope.cancel()
                # The cancelled dispatcher waits for the claim's answer (for a bounded time)
                with trio.move_on_after(0.5):
                    await stopped.wait()
                proxy.to_client.thaw()
    (row,) = fetch_rows(database_url)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("queued", 0, None)
    assert handed_back == [Status.QUEUED]


async def test_an_attempt_whose_result_was_failed_meanwhile_records_nothing_and_says_so(
    settings: Settings,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its process stalled past its lease, the reaper failed the result (attempts spent), then
    the attempt went on and stored the object: the success is not recorded, nothing claims it
    was, and the object it stored goes."""
    caplog.set_level(logging.INFO, logger="bgchallenge")
    bucket_state = Bucket(s3_endpoint, bucket)
    insert_results(database_url, [origin.url("late.png")])
    with trio.fail_after(IO_GUARD_SECONDS):
        async with worker_context(settings) as ctx:
            (claim,) = await ctx.attempts.claim_due(1)
            with psycopg.connect(database_url) as connection:
                connection.execute("UPDATE results SET lease_expires_at = now() - interval '1s'")
            (reaped,) = await ctx.attempts.reap_expired_leases(max_attempts=1)
            assert reaped["status"] == "failed"
            await run_attempt(ctx, claim)
    events = [record.getMessage() for record in caplog.records]
    assert "outcome not recorded" in events and "succeeded" not in events
    registry = ctx.metrics.registry
    assert registry.get_sample_value("bgc_results_succeeded_total") == 0
    assert registry.get_sample_value("bgc_stored_bytes_total") == 0
    assert registry.get_sample_value("bgc_outcomes_not_recorded_total") == 1
    (row,) = fetch_rows(database_url)
    assert (row["status"], row["error_code"], row["storage_key"]) == ("failed", "exhausted", None)
    assert bucket_state.object_keys() == [] and bucket_state.uploads() == []
    assert row["storage_cleanup_due_at"] is None


async def test_a_result_canceled_between_retries_is_swept_clean(
    settings: Settings, database_url: str, s3_endpoint: str, bucket: str
) -> None:
    """Its first attempt's process died mid-upload and after storing the object (both, to
    leave both kinds of leftovers); the result, queued again, is canceled before a retry."""
    bucket_state = Bucket(s3_endpoint, bucket)
    insert_results(database_url, ["http://127.0.0.1:9/files/left.png"])
    set_attempts(database_url, 1)
    (row,) = fetch_rows(database_url)
    key = object_key(row["id"], row["object_path"])
    bucket_state.client.put_object(Bucket=bucket, Key=key, Body=b"stale")
    bucket_state.client.create_multipart_upload(Bucket=bucket, Key=key)
    with trio.fail_after(IO_GUARD_SECONDS):
        async with worker_context(settings) as ctx:
            canceled = await Results(ctx.attempts.database).cancel(row["id"])
            assert canceled is not None and canceled.result.status is Status.CANCELED
            assert fetch_rows(database_url)[0]["storage_cleanup_due_at"] is not None
            await sweep_storage(ctx)
    assert leftovers(bucket_state, [key]) == []
    assert fetch_rows(database_url)[0]["storage_cleanup_due_at"] is None
