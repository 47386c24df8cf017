"""The test suite's rules.

- Real servers only, on loopback: PostgreSQL (embedded via pgserver, or TEST_DATABASE_URL),
  S3 (moto's server in a child process, or TEST_S3_ENDPOINT_URL), and origin HTTP servers the
  tests start themselves. Nothing here mocks PostgreSQL, S3 or HTTP.
- Every test gets a fresh database cloned from a migrated template, and a bucket of its own.
- Ports are 0 (the OS picks); every I/O test runs under a `fail_after` guard so that a hang
  fails with its logs; the autojump clock is only for tests with no real I/O.
- The work queue's transport is `postgres` unless a test asks for every transport with
  `@on_every_queue` (the `queue_transport` fixture, parametrized); each broker transport gets
  a queue of its own per test (SQS: on the moto server that serves S3, or
  TEST_SQS_ENDPOINT_URL), with short lease-like timings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import trio

from bgchallenge.embedded import running_s3_server, set_fake_aws_credentials, start_postgres
from bgchallenge.queues.sqs import ensure_queue
from bgchallenge.service import Role, run_service
from bgchallenge.settings import Settings
from tests.support.origin import Origin, serve_origin
from tests.support.servers import PostgresCluster, unique_name

set_fake_aws_credentials()

pytest_plugins = ["tests.support.rabbitmq"]

IO_GUARD_SECONDS = 30


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        cluster = PostgresCluster(url)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="bgc-pg-")) / "pgdata"
        server = start_postgres(data_dir)
        cluster = PostgresCluster(server.get_uri())
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    url = os.environ.get("TEST_S3_ENDPOINT_URL")
    if url:
        yield url
        return
    with running_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def database_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    url = postgres_cluster.create_database()
    try:
        yield url
    finally:
        postgres_cluster.drop_database(url)


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = unique_name("bgc-test-")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def _sqs(request: pytest.FixtureRequest) -> dict[str, Any]:
    endpoint = os.environ.get("TEST_SQS_ENDPOINT_URL") or request.getfixturevalue("s3_endpoint")
    url = trio.run(ensure_queue, endpoint, unique_name("bgc-test-"))
    return {"sqs_endpoint_url": endpoint, "sqs_queue_url": url, "sqs_wait_seconds": 1}


def _rabbitmq(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Skips, saying why, when no RabbitMQ answers (tests/support/rabbitmq.py)."""
    return {
        "rabbitmq_url": request.getfixturevalue("rabbitmq_url"),
        "rabbitmq_queue": request.getfixturevalue("rabbit_queue"),
    }


# BGC_QUEUE value -> the settings of a queue of its own for one test. Adding a transport to
# the tests parametrized over every one (`on_every_queue`) is one entry here.
QUEUE_TRANSPORTS: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "postgres": lambda request: {},
    "sqs": _sqs,
    "rabbitmq": _rabbitmq,
}
on_every_queue = pytest.mark.parametrize("queue_transport", list(QUEUE_TRANSPORTS))


@pytest.fixture
def queue_transport() -> str:
    """The transport the `settings` choose; `on_every_queue` runs a test on each."""
    return "postgres"


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    database_url: str,
    s3_endpoint: str,
    bucket: str,
    queue_transport: str,
) -> Settings:
    return Settings(
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        s3_bucket=bucket,
        port=0,
        allow_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        retry_delays=(0.05, 0.1, 0.2),
        sweep_seconds=60.0,
        queue=queue_transport,
        outbox_grace_seconds=2.0,
        outbox_sweep_seconds=0.2,
        **QUEUE_TRANSPORTS[queue_transport](request),
    )


@dataclasses.dataclass
class RunningService:
    base_url: str
    shutdown: trio.Event
    client: httpx.AsyncClient


async def start_service(
    nursery: trio.Nursery, settings: Settings, role: Role = Role.ALL
) -> RunningService:
    shutdown = trio.Event()
    binds = await nursery.start(run_service, settings, role, shutdown)
    base_url = binds[0] if binds else ""
    return RunningService(base_url, shutdown, httpx.AsyncClient(base_url=base_url, timeout=10))


@pytest.fixture
def role() -> Role:
    """The parts the `service` fixture runs; a test module may override it."""
    return Role.ALL


@pytest.fixture
async def service(
    nursery: trio.Nursery, settings: Settings, role: Role
) -> AsyncIterator[RunningService]:
    with trio.fail_after(IO_GUARD_SECONDS):
        running = await start_service(nursery, settings, role)
    try:
        yield running
    finally:
        await running.client.aclose()
        running.shutdown.set()


@pytest.fixture
async def origin(nursery: trio.Nursery) -> Origin:
    with trio.fail_after(IO_GUARD_SECONDS):
        started: Origin = await nursery.start(serve_origin, Origin())
        return started
