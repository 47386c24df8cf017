"""The test suite's rules.

- Real servers only, on loopback: PostgreSQL (embedded via pgserver, or TEST_DATABASE_URL),
  S3 (moto's server in a child process, or TEST_S3_ENDPOINT_URL), and origin HTTP servers the
  tests start themselves. Nothing here mocks PostgreSQL, S3 or HTTP.
- Every test gets a fresh database cloned from a migrated template, and a bucket of its own.
- Ports are 0 (the OS picks); every I/O test runs under a `fail_after` guard so that a hang
  fails with its logs; the autojump clock is only for tests with no real I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import trio

from bgchallenge.embedded import running_s3_server, set_fake_aws_credentials, start_postgres
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


@pytest.fixture
def settings(database_url: str, s3_endpoint: str, bucket: str) -> Settings:
    return Settings(
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        s3_bucket=bucket,
        port=0,
        allow_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        retry_delays=(0.05, 0.1, 0.2),
        sweep_seconds=60.0,
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
