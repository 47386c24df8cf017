"""GET /health with the database and the bucket up, and with PostgreSQL stopped."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import trio

from bgchallenge.settings import Settings
from bgchallenge.web.app import HEALTH_MAX_AGE_SECONDS, HEALTH_TIMEOUT_SECONDS
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.servers import private_postgres


async def test_can_respond(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "storage": "ok"}


async def test_names_the_database_while_postgresql_is_stopped(
    nursery: trio.Nursery, settings: Settings
) -> None:
    with private_postgres(Path(tempfile.mkdtemp(prefix="bgc-health-")) / "pgdata") as postgres:
        with trio.fail_after(IO_GUARD_SECONDS):
            own = dataclasses.replace(settings, database_url=postgres.url)
            service = await start_service(nursery, own)
            assert (await service.client.get("/health")).status_code == 200
            await trio.to_thread.run_sync(postgres.stop)

            # the answer is at most HEALTH_MAX_AGE_SECONDS old: 503 soon after
            with trio.fail_after(HEALTH_MAX_AGE_SECONDS + HEALTH_TIMEOUT_SECONDS + 2):
                while True:
                    response = await service.client.get("/health")
                    if response.status_code != 200:
                        break
                    await trio.sleep(0.1)
            assert response.status_code == 503
            problem = response.json()
            assert response.headers["Content-Type"] == "application/problem+json"
            assert problem["storage"] == "ok"
            assert problem["database"] != "ok"
            assert "database" in problem["detail"]

            await trio.to_thread.run_sync(postgres.start)
            # the service recovers by itself: healthy again within a few seconds
            with trio.fail_after(5):
                while True:
                    if (await service.client.get("/health")).status_code == 200:
                        break
                    await trio.sleep(0.1)
            service.shutdown.set()


async def test_names_the_storage_when_the_bucket_is_missing(
    nursery: trio.Nursery, settings: Settings
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(
            nursery, dataclasses.replace(settings, s3_bucket="bgc-no-such-bucket")
        )
        response = await service.client.get("/health")
        service.shutdown.set()
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["storage"] != "ok"
