"""POST /results/{id}/cancel for queued, terminal and unknown results."""

from __future__ import annotations

from typing import Any

import psycopg
import trio

from tests.conftest import IO_GUARD_SECONDS, RunningService


async def enqueue(service: RunningService, name: str) -> dict[str, Any]:
    response = await service.client.post(
        "/results/enqueue", json={"jobId": "j", "url": f"https://cdn.example.com/{name}"}
    )
    assert response.status_code == 202
    return dict(response.json())


async def test_can_cancel_queued_item(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        queued = await enqueue(service, "a.png")
        response = await service.client.post(f"/results/{queued['id']}/cancel")
        detail = (await service.client.get(f"/results/{queued['id']}")).json()
    assert response.status_code == 200
    canceled = response.json()
    assert canceled["status"] == "canceled" and canceled == detail
    assert canceled["canceledAt"] and canceled["endedAt"] == canceled["canceledAt"]
    assert canceled["startedAt"] is None and canceled["durationMs"] is None
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT source_url FROM results").fetchone()
    assert row == (None,)  # terminal: the presigned URL is forgotten


async def test_is_idempotent_on_non_queued(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        canceled_id = (await enqueue(service, "a.png"))["id"]
        first = await service.client.post(f"/results/{canceled_id}/cancel")
        second = await service.client.post(f"/results/{canceled_id}/cancel")
        done_id = (await enqueue(service, "b.png"))["id"]
        with psycopg.connect(database_url) as connection:
            connection.execute(
                "UPDATE results SET status = 'succeeded', started_at = clock_timestamp(),"
                " ended_at = clock_timestamp(), source_url = NULL WHERE id = %s",
                (done_id,),
            )
        before = (await service.client.get(f"/results/{done_id}")).json()
        done = await service.client.post(f"/results/{done_id}/cancel")
    assert second.status_code == 200 and second.json() == first.json()
    assert done.status_code == 200 and done.json() == before


async def test_unknown_id_is_404(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.post("/results/424242/cancel")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
