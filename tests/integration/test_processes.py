"""Whole service processes: scale-out, crashes, restarts and outages are normal life."""

from __future__ import annotations

import dataclasses
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from bgchallenge.db.migrate import MIGRATION_LOCK_KEY
from bgchallenge.embedded import free_port
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, on_every_queue, start_service
from tests.support.origin import Origin, body_sha256
from tests.support.processes import ServiceProcess
from tests.support.proxy import PostgresProxy
from tests.support.results import (
    Bucket,
    eventually,
    fetch_rows,
    insert_results,
    wait_until_terminal,
)
from tests.support.servers import private_postgres

MIB = 1024 * 1024
Spawn = Callable[..., ServiceProcess]


@pytest.fixture
def spawn(settings: Settings) -> Iterator[Spawn]:
    started: list[ServiceProcess] = []

    def start(role: str = "worker", own: Settings | None = None, **env: str) -> ServiceProcess:
        process = ServiceProcess(own or settings, role, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
        print(f"--- log of service process {process.pid}:\n{process.logs()[-4000:]}")


@on_every_queue
async def test_two_worker_processes_fetch_each_result_exactly_once(
    spawn: Spawn, origin: Origin, database_url: str
) -> None:
    workers = [spawn("worker", BGC_WORKERS="8") for _ in range(2)]
    with trio.fail_after(IO_GUARD_SECONDS * 3):
        for worker in workers:
            await worker.wait_ready()
        urls = [origin.url(f"img{n}.png", size=2000) for n in range(300)]
        insert_results(database_url, urls)
        rows = await wait_until_terminal(database_url, 300, within=80)
    retried = [
        (r["id"], r["attempts"], r["error_code"], r["error_message"])
        for r in rows
        if r["attempts"] != 1 or r["status"] != "succeeded"
    ]
    assert retried == []
    assert [n for n in range(300) if origin.gets(f"img{n}.png") != 1] == []

    def succeeded_per_process() -> list[int]:
        return [sum(1 for e in w.events() if e.get("event") == "succeeded") for w in workers]

    # A worker logs a success after its commit, and writes log lines from a thread: wait for them.
    with trio.fail_after(IO_GUARD_SECONDS):
        await eventually(lambda: sum(succeeded_per_process()) >= 300)
    per_process = succeeded_per_process()
    assert sum(per_process) == 300 and all(count > 0 for count in per_process), per_process


@on_every_queue
async def test_results_of_a_killed_worker_finish_in_another_after_the_lease_expires(
    spawn: Spawn, origin: Origin, database_url: str, s3_endpoint: str, bucket: str
) -> None:
    bucket_state = Bucket(s3_endpoint, bucket)
    size = 7 * MIB  # two parts of 5 MiB: the killed process leaves a multipart upload behind
    first = spawn("worker", BGC_LEASE_SECONDS="2")
    with trio.fail_after(IO_GUARD_SECONDS * 2):
        await first.wait_ready()
        insert_results(database_url, [origin.url("big.png", size=size, slow=0.05)])
        await eventually(bucket_state.uploads)  # a part is in: kill it mid-download
        first.send(signal.SIGKILL)
        await first.wait_exit()
        (row,) = fetch_rows(database_url)
        assert row["status"] == "running"

        second = spawn("worker", BGC_LEASE_SECONDS="2")
        await second.wait_ready()
        (row,) = await wait_until_terminal(database_url, 1, within=40)
    assert (row["status"], row["attempts"]) == ("succeeded", 2)
    assert row["storage_size"] == size and row["storage_sha256"] == body_sha256(size)
    assert origin.gets("big.png") == 2
    assert bucket_state.uploads() == []  # the dead process's upload was aborted


@on_every_queue
async def test_sigterm_hands_running_downloads_back_and_they_finish_after_a_restart(
    spawn: Spawn, origin: Origin, database_url: str, s3_endpoint: str, bucket: str
) -> None:
    bucket_state = Bucket(s3_endpoint, bucket)
    service = spawn("worker", BGC_GRACE_SECONDS="0.5")
    urls = [origin.url(f"slow{n}.png", size=6 * MIB, slow=0.05) for n in range(3)]
    with trio.fail_after(IO_GUARD_SECONDS * 2):
        await service.wait_ready()
        insert_results(database_url, urls)
        await eventually(lambda: sum(origin.gets(f"slow{n}.png") for n in range(3)) == 3)
        service.send(signal.SIGTERM)
        assert await service.wait_exit() == 0
        rows = fetch_rows(database_url)
        assert [(r["status"], r["attempts"]) for r in rows] == [("queued", 0)] * 3
        assert bucket_state.uploads() == [] and bucket_state.object_keys() == []

        restarted = spawn("worker")
        await restarted.wait_ready()
        rows = await wait_until_terminal(database_url, 3, within=40)
        restarted.send(signal.SIGTERM)
        assert await restarted.wait_exit() == 0
    assert [(r["status"], r["attempts"]) for r in rows] == [("succeeded", 1)] * 3
    assert "Traceback" not in service.logs() + restarted.logs()


@on_every_queue
async def test_sigterm_lets_downloads_finish_within_the_grace_period(
    spawn: Spawn, origin: Origin, database_url: str
) -> None:
    service = spawn("worker", BGC_GRACE_SECONDS="20")
    with trio.fail_after(IO_GUARD_SECONDS):
        await service.wait_ready()
        insert_results(database_url, [origin.url("short.png", size=MIB, slow=0.05)])
        await eventually(lambda: origin.gets("short.png") == 1)
        service.send(signal.SIGTERM)
        assert await service.wait_exit() == 0
    (row,) = fetch_rows(database_url)
    assert (row["status"], row["attempts"]) == ("succeeded", 1)


async def test_postgresql_restarted_under_a_running_service(
    nursery: trio.Nursery, settings: Settings, origin: Origin
) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bgc-restart-")) / "pgdata"
    with private_postgres(data_dir) as postgres, trio.fail_after(IO_GUARD_SECONDS * 3):
        own = dataclasses.replace(settings, database_url=postgres.url, lease_seconds=3.0)
        service = await start_service(nursery, own)

        retrying: set[str] = set()
        all_retrying = trio.Event()

        async def enqueue(name: str) -> int:
            """Like a client would: retry a 503 until the service takes it."""
            while True:
                try:
                    response = await service.client.post(
                        "/results/enqueue",
                        json={"jobId": "j", "url": origin.url(name, size=MIB, slow=0.01)},
                    )
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 202:
                    return int(response.json()["id"])
                assert response is None or response.status_code == 503, response.text
                retrying.add(name)
                if len(retrying) == 3:
                    all_retrying.set()
                await trio.sleep(0.1)  # a client's back-off between retries

        for n in range(5):
            await enqueue(f"before{n}.png")
        await trio.to_thread.run_sync(postgres.stop)
        refused = await service.client.post(
            "/results/enqueue", json={"jobId": "j", "url": origin.url("during.png")}
        )
        assert refused.status_code == 503
        assert refused.headers["Content-Type"] == "application/problem+json"
        async with trio.open_nursery() as clients:
            for n in range(3):
                clients.start_soon(enqueue, f"during{n}.png")
            await all_retrying.wait()  # each client is retrying through the outage
            await trio.to_thread.run_sync(postgres.start)
        for n in range(5):
            await enqueue(f"after{n}.png")
        rows = await wait_until_terminal(postgres.url, 13, within=60)
        service.shutdown.set()
    assert [row["status"] for row in rows] == ["succeeded"] * 13, rows


async def test_memory_for_eight_concurrent_20_mib_downloads(
    spawn: Spawn, origin: Origin, database_url: str
) -> None:
    service = spawn("worker", BGC_WORKERS="8")
    with trio.fail_after(IO_GUARD_SECONDS * 3):
        base = (await service.wait_ready())["addresses"][0]
        async with httpx.AsyncClient(base_url=base) as client:
            # the baseline includes the database and storage paths, not only the imports
            assert (await client.get("/health")).status_code == 200
        baseline = service.rss_kib("VmRSS")
        insert_results(database_url, [origin.url(f"m{n}.png", size=20 * MIB) for n in range(8)])
        rows = await wait_until_terminal(database_url, 8, within=80)
        growth_mib = (service.rss_kib("VmHWM") - baseline) / 1024
    assert {row["status"] for row in rows} == {"succeeded"}
    print(f"peak RSS growth for 8 x 20 MiB: {growth_mib:.1f} MiB")
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.1f} MiB"


# Signals during start-up and shutdown (docs/operations.md, "Shutdown"). "Promptly" is a bound on
# behaviour, not a performance claim: without the fixes these processes wait minutes or forever.
PROMPTLY = 5.0


def waiting_for_advisory_lock(database_url: str) -> bool:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = database"
            " WHERE locktype = 'advisory' AND NOT granted AND d.datname = current_database()"
        ).fetchone()
        return row is not None and row[0] > 0


async def test_sigterm_while_start_up_waits_for_the_migration_lock(
    spawn: Spawn, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        service = spawn("worker")
        with trio.fail_after(IO_GUARD_SECONDS):
            await eventually(lambda: waiting_for_advisory_lock(database_url))
        service.send(signal.SIGTERM)
        status = await service.wait_exit(within=PROMPTLY)
        assert not waiting_for_advisory_lock(database_url)  # its lock request was cancelled
    assert status == 0
    assert "Traceback" not in service.logs()


async def test_sigterm_while_start_up_cannot_reach_postgresql(
    spawn: Spawn, settings: Settings, nursery: trio.Nursery
) -> None:
    """A closed port (connection refused, retried) and a server that accepts the connection and
    never answers (a black hole: only a connect timeout ends a connect)."""
    accepted: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, hold, 0)
    black_hole = listeners[0].socket.getsockname()[1]
    closed = free_port()
    for port, started in ((closed, lambda: True), (black_hole, lambda: len(accepted) > 0)):
        url = f"postgresql://bgc@127.0.0.1:{port}/bgc"
        service = spawn("worker", dataclasses.replace(settings, database_url=url))
        with trio.fail_after(IO_GUARD_SECONDS):
            await service.wait_event("starting")
            await eventually(started)
        service.send(signal.SIGTERM)
        assert await service.wait_exit(within=PROMPTLY) == 0, port
        assert "Traceback" not in service.logs()


async def test_a_second_sigterm_during_a_graceful_stop_exits_at_once(
    spawn: Spawn, origin: Origin, database_url: str
) -> None:
    service = spawn("worker", BGC_GRACE_SECONDS="120")
    with trio.fail_after(IO_GUARD_SECONDS):
        await service.wait_ready()
        # 128 chunks 0.2 s apart: the attempt would hold the graceful stop for ~25 s
        insert_results(database_url, [origin.url("slow.png", size=8 * MIB, slow=0.2)])
        await eventually(lambda: origin.gets("slow.png") == 1)
        service.send(signal.SIGTERM)
        await service.wait_event("workers stopping")
    service.send(signal.SIGTERM)
    assert await service.wait_exit(within=PROMPTLY) == 128 + signal.SIGTERM
    assert "second signal: exiting at once" in service.logs()


async def test_a_second_signal_under_dev_still_stops_the_embedded_servers(
    settings: Settings, origin: Origin
) -> None:
    """Exiting at once skips unwinding, not the exit functions: the embedded PostgreSQL and S3
    server of `bgchallenge dev` stop too (else they run on, and pgserver's record of who uses
    its server goes stale, so later runs never stop it either)."""
    # as conftest does: pytest's tmp_path is not open to the user pgserver runs PostgreSQL as
    data_dir = Path(tempfile.mkdtemp(prefix="bgc-dev-"))
    service = ServiceProcess(
        settings,
        command=("dev", "--data-dir", str(data_dir)),
        DATABASE_URL="",
        S3_ENDPOINT_URL="",
        BGC_ALLOW_NETWORKS="",
        BGC_GRACE_SECONDS="120",
    )
    try:
        with trio.fail_after(IO_GUARD_SECONDS * 2):
            base_url = (await service.wait_ready(within=IO_GUARD_SECONDS * 2))["addresses"][0]
            (s3_line,) = [
                e["line"] for e in service.events() if e.get("line", "").startswith("S3:")
            ]
            s3_port = int(s3_line.split()[1].rsplit(":", 1)[1])
            async with httpx.AsyncClient(base_url=base_url) as client:
                url = origin.url("slow.png", size=8 * MIB, slow=0.2)
                response = await client.post("/results/enqueue", json={"jobId": "j", "url": url})
                assert response.status_code == 202, response.text
            await eventually(lambda: origin.gets("slow.png") == 1)
            service.send(signal.SIGTERM)
            await service.wait_event("workers stopping")
        service.send(signal.SIGTERM)
        assert await service.wait_exit(within=PROMPTLY) == 128 + signal.SIGTERM
        assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "PostgreSQL still runs"
        with pytest.raises(OSError):
            with trio.fail_after(IO_GUARD_SECONDS):
                await trio.open_tcp_stream("127.0.0.1", s3_port)
    finally:
        service.close()
        print(f"--- log of dev process {service.pid}:\n{service.logs()[-4000:]}")


async def test_a_graceful_stop_ends_in_bounded_time_when_postgresql_stops_answering(
    spawn: Spawn, settings: Settings, origin: Origin, database_url: str, nursery: trio.Nursery
) -> None:
    """Lease renewals, the hand-back, the listener and the pool all wait on a server that
    accepts and acknowledges but never answers; each wait is bounded (docs/operations.md,
    "Shutdown")."""
    proxy = PostgresProxy(database_url)
    await nursery.start(proxy.serve)
    own = dataclasses.replace(settings, database_url=proxy.url)
    service = spawn("worker", own, BGC_GRACE_SECONDS="1", BGC_LEASE_SECONDS="3")
    with trio.fail_after(IO_GUARD_SECONDS):
        await service.wait_ready()
        insert_results(database_url, [origin.url("slow.png", size=8 * MIB, slow=0.2)])
        await eventually(lambda: origin.gets("slow.png") == 1)
        proxy.freeze()
        service.send(signal.SIGTERM)
        await service.wait_event("workers stopping")
    # grace (1 s), a claim in flight (2 s + 2 s), hand-back (5 s + 2 s), pool (3 s), and some
    # room for a busy machine (some of these overlap)
    assert await service.wait_exit(within=1 + 7 + 3 + 4) == 0
    assert "Traceback" not in service.logs()
