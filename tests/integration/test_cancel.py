"""Cancelling results that are running, in this process or another, and racing claims."""

from __future__ import annotations

import pytest
import trio

from bgchallenge.db.repository import Results
from bgchallenge.service import Role
from bgchallenge.settings import Settings
from bgchallenge.work.workers import run_attempt
from tests.conftest import IO_GUARD_SECONDS, RunningService, on_every_queue, start_service
from tests.support.attempts import worker_context
from tests.support.metrics import samples
from tests.support.origin import Origin
from tests.support.processes import ServiceProcess
from tests.support.results import (
    Bucket,
    eventually,
    fetch_rows,
    insert_results,
    wait_until_terminal,
)

MIB = 1024 * 1024


@on_every_queue
async def test_cancel_of_a_running_download_held_by_a_second_process(
    nursery: trio.Nursery,
    settings: Settings,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
) -> None:
    bucket_state = Bucket(s3_endpoint, bucket)
    worker = ServiceProcess(settings, "worker")
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            await worker.wait_ready()
            web = await start_service(nursery, settings, Role.WEB)
            response = await web.client.post(
                "/results/enqueue",
                json={"jobId": "j", "url": origin.url("big.png", size=12 * MIB, slow=0.02)},
            )
            result_id = response.json()["id"]
            await eventually(bucket_state.uploads)  # running, a part already stored
            requested_at = trio.current_time()
            cancel = await web.client.post(f"/results/{result_id}/cancel")
            assert cancel.status_code == 202 and cancel.json()["status"] == "running"
            (row,) = await wait_until_terminal(database_url, 1, within=5)
            elapsed = trio.current_time() - requested_at
            web.shutdown.set()
    finally:
        worker.close()
    assert row["status"] == "canceled"
    assert row["canceled_at"] and row["ended_at"] and row["source_url"] is None
    assert elapsed < 1.0, f"canceled after {elapsed:.2f} s"
    assert bucket_state.uploads() == [] and bucket_state.object_keys() == []


@on_every_queue
async def test_cancel_racing_a_claim_ends_in_exactly_one_outcome(
    service: RunningService, origin: Origin, database_url: str, s3_endpoint: str, bucket: str
) -> None:
    bucket_state = Bucket(s3_endpoint, bucket)
    answers: dict[int, tuple[int, str]] = {}

    async def enqueue_and_cancel(n: int) -> None:
        response = await service.client.post(
            "/results/enqueue", json={"jobId": "race", "url": origin.url(f"r{n}.png")}
        )
        result_id = response.json()["id"]
        await trio.sleep((n % 5) * 0.002)  # land the cancel at different moments of the claim
        answer = await service.client.post(f"/results/{result_id}/cancel")
        answers[result_id] = (answer.status_code, answer.json()["status"])

    def stored_ids() -> set[int]:
        return {int(key.split("/")[1]) for key in bucket_state.object_keys()}

    with trio.fail_after(IO_GUARD_SECONDS * 2):
        async with trio.open_nursery() as clients:
            for n in range(200):
                clients.start_soon(enqueue_and_cancel, n)
        rows = await wait_until_terminal(database_url, 200, within=40)
        succeeded = {row["id"] for row in rows if row["status"] == "succeeded"}
        # A canceled attempt's object goes right after its state is recorded (docs/http.md, "Nothing
        # stays in the bucket"): wait for that, bounded by the guard.
        await eventually(lambda: stored_ids() == succeeded)
    outcomes = {row["id"]: row["status"] for row in rows}
    assert set(outcomes.values()) <= {"canceled", "succeeded"}, outcomes
    assert {code for code, _ in answers.values()} <= {200, 202}
    assert stored_ids() == succeeded, "a canceled result left an object, or a success none"
    assert bucket_state.uploads() == []
    for result_id, (code, shown) in answers.items():
        if code == 200:  # canceled while queued, or already over: either way it is final
            assert outcomes[result_id] == shown, (result_id, code, shown)
        else:  # running when asked: whatever the attempt was doing, it ends canceled
            assert (shown, outcomes[result_id]) == ("running", "canceled"), result_id


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"fail": 9}, id="transient-failure"),
        pytest.param({"status": 404, "head": 200}, id="permanent-failure"),
        pytest.param({"size": 1000}, id="upload-completes"),
        pytest.param({"size": 6 * MIB}, id="multipart-upload-completes"),
    ],
)
async def test_after_a_202_the_result_ends_canceled_whatever_the_attempt_did(
    settings: Settings,
    origin: Origin,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
    knobs: dict[str, object],
) -> None:
    bucket_state = Bucket(s3_endpoint, bucket)
    insert_results(database_url, [origin.url("c.png", **knobs)])
    with trio.fail_after(IO_GUARD_SECONDS):
        async with worker_context(settings) as ctx:
            (claim,) = await ctx.attempts.claim_due(1)
            canceled = await Results(ctx.attempts.database).cancel(claim.id)
            assert canceled is not None and canceled.requested  # the API answers 202
            await run_attempt(ctx, claim)
            assert await ctx.attempts.claim_due(1) == []
    (row,) = fetch_rows(database_url)
    assert origin.gets("c.png") == 1
    assert (row["status"], row["attempts"]) == ("canceled", 1)
    assert row["canceled_at"] and row["ended_at"] and row["source_url"] is None
    assert row["storage_key"] is None and row["storage_cleanup_due_at"] is None
    assert bucket_state.uploads() == [] and bucket_state.object_keys() == []


async def test_metrics_populated(
    service: RunningService,
    origin: Origin,
    settings: Settings,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """The counters after real work agree with what the database and the bucket hold."""
    urls = {
        "ok.png": origin.url("ok.png", size=3000),
        "big.png": origin.url("big.png", size=MIB + 17),
        "flaky.png": origin.url("flaky.png", size=500, fail=1),
        "gone.png": origin.url("gone.png", status=404, head=404),
    }
    with trio.fail_after(IO_GUARD_SECONDS):
        for url in urls.values():
            await service.client.post("/results/enqueue", json={"jobId": "m", "url": url})
        await service.client.post("/results/enqueue", json={"jobId": "m", "url": urls["ok.png"]})
        rows = await wait_until_terminal(database_url, len(urls))
        listed = (await service.client.get("/results/list?jobId=m")).json()["items"]
        details = [(await service.client.get(f"/results/{i['id']}")).json() for i in listed]
        metrics = samples((await service.client.get("/metrics")).text)
    listing = Bucket(s3_endpoint, bucket).client.list_objects_v2(Bucket=bucket)
    stored = {o["Key"]: o["Size"] for o in listing.get("Contents", [])}
    assert listed == details
    for item in listed:
        assert item["startedAt"] and item["endedAt"] and item["createdAt"] <= item["startedAt"]
        started, ended = (trio_ms(item["startedAt"]), trio_ms(item["endedAt"]))
        assert item["durationMs"] == ended - started >= 0
        assert item["canceledAt"] is None

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert len(succeeded) == 3 and sorted(stored.values()) == [500, 3000, MIB + 17]
    assert value("bgc_results_enqueued_total") == len(urls)
    assert value("bgc_results_duplicate_total") == 1
    assert value("bgc_results_succeeded_total") == len(succeeded)
    assert value("bgc_results_failed_total", code="not_found") == 1
    assert value("bgc_attempts_total") == sum(r["attempts"] for r in rows) == 5
    assert value("bgc_retries_total", code="origin_unavailable") == 1
    assert value("bgc_stored_bytes_total") == sum(stored.values())
    assert value("bgc_download_seconds_count") == len(succeeded)
    assert value("bgc_download_seconds_sum") > 0
    s3_calls = sum(v for (name, _), v in metrics.items() if name == "bgc_upload_seconds_count")
    assert s3_calls >= len(succeeded)
    assert value("bgc_results_canceled_total") == 0
    assert value("bgc_workers") == settings.workers and value("bgc_workers_busy") == 0
    assert value("bgc_queue", state="queued") == value("bgc_queue", state="running") == 0


def trio_ms(stamp: str) -> int:
    from datetime import datetime

    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)
