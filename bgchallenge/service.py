"""The root of the task tree: builds everything from Settings and owns shutdown.

run_until_signalled
├── signals     first: graceful stop (or start-up cancelled); second: exit at once
└── run_service
    ├── start-up watch  a shutdown before "ready" cancels the start-up
    └── root nursery
        ├── http        (roles all, web)
        └── workers     (roles all, worker; see bgchallenge.work)
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
from collections.abc import AsyncIterator
from enum import StrEnum

import trio

from bgchallenge.db.batching import Batcher
from bgchallenge.db.database import Database, open_database
from bgchallenge.db.migrate import migrate
from bgchallenge.db.repository import Attempts, Results
from bgchallenge.domain.network import AddressGuard
from bgchallenge.metrics import Metrics
from bgchallenge.queues import Transport, open_transport
from bgchallenge.settings import Settings
from bgchallenge.storage.s3 import Storage
from bgchallenge.web.app import WebDependencies, create_app
from bgchallenge.web.server import serve_http
from bgchallenge.web.stream import StreamHub
from bgchallenge.work.fetch import Fetcher
from bgchallenge.work.workers import WorkContext, serve_workers, worker_identity

log = logging.getLogger(__name__)


class Role(StrEnum):
    ALL = "all"
    WEB = "web"
    WORKER = "worker"

    @property
    def serves_http(self) -> bool:
        return self in (Role.ALL, Role.WEB)

    @property
    def runs_workers(self) -> bool:
        return self in (Role.ALL, Role.WORKER)


def create_storage(settings: Settings, metrics: Metrics | None = None) -> Storage:
    def observe(operation: str, seconds: float) -> None:
        if metrics is not None:
            metrics.upload_seconds.labels(operation).observe(seconds)

    return Storage.create(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        threads=settings.s3_threads,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        observe=observe,
    )


def work_context(
    settings: Settings,
    database: Database,
    storage: Storage,
    metrics: Metrics,
    transport: Transport | None = None,
    *,
    statements_in_threads: bool = False,
) -> WorkContext:
    """The workers' parts; ``transport`` defaults to ``postgres`` (the results table).
    ``statements_in_threads``: see `Attempts` (true in a worker-only process)."""
    transport = transport or Transport("postgres", settings)
    attempts = Attempts(
        database,
        worker_identity(),
        settings.lease_seconds,
        transport.outbox,
        observe=lambda operation, seconds: metrics.database_seconds.labels(operation).observe(
            seconds
        ),
        in_threads=statements_in_threads,
    )
    return WorkContext(
        attempts=attempts,
        fetcher=Fetcher(
            AddressGuard(settings.allow_networks),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_bytes=settings.max_bytes,
            min_rate=settings.min_rate,
        ),
        storage=storage,
        settings=settings,
        metrics=metrics,
        queue=transport.work_queue(attempts),
    )


async def run_service(
    settings: Settings,
    role: Role,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the service until ``shutdown`` is set, then stop gracefully and return.

    Reports the HTTP server's bound addresses (empty for the worker role) once the database is
    migrated and every part is ready. A crash of any part cancels the others and propagates.
    If ``shutdown`` is set before that, the start-up is cancelled wherever it waits (connecting,
    the migration lock, the listener) and this returns without reporting.
    """
    async with trio.open_nursery() as nursery:
        starting = trio.CancelScope()

        async def cancel_start_up() -> None:
            await shutdown.wait()
            starting.cancel()  # no effect once started: then the graceful stop takes over

        nursery.start_soon(cancel_start_up)
        with starting:
            binds = await nursery.start(_run, settings, role, shutdown)
        if starting.cancelled_caught:
            log.info("start-up cancelled")
            return
        task_status.started(binds)


async def _run(
    settings: Settings,
    role: Role,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    database_url = settings.require_database()
    settings.require_queue()
    if role.serves_http and settings.signing_secret is None:
        log.warning("request signing is off: set BGC_SIGNING_SECRET to require signed requests")
    async with open_database(database_url, max_size=settings.db_pool_size) as database:
        applied = await migrate(database)
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        metrics = Metrics()
        storage = create_storage(settings, metrics)
        async with open_transport(settings, database) as transport, trio.open_nursery() as nursery:
            results = Results(database, transport.outbox)
            # Workers first: the HTTP port answers only once the listener is listening.
            if role.runs_workers:
                context = work_context(
                    settings,
                    database,
                    storage,
                    metrics,
                    transport,
                    statements_in_threads=not role.serves_http,
                )
                await nursery.start(serve_workers, context, shutdown)
            # A worker process serves the operations routes (/health, /metrics) only.
            cursor_key = await results.cursor_key()
            deps = WebDependencies(
                results,
                storage,
                settings.signing_secret,
                cursor_key,
                metrics,
                enqueue=Batcher(results.enqueue_many),
                unchanged_since=Batcher(results.unchanged_since),
                serve_api=role.serves_http,
                callbacks=settings.webhook_secret is not None,
                streams=StreamHub(
                    results,
                    cursor_key,
                    max_streams=settings.stream_max,
                    keep_alive_seconds=settings.stream_keep_alive_seconds,
                )
                if role.serves_http
                else None,
            )
            binds = await nursery.start(serve_web, deps, settings, shutdown)
            log.info("ready", extra={"addresses": binds, "role": role.value})
            task_status.started(binds)


async def serve_web(
    deps: WebDependencies,
    settings: Settings,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The HTTP server and the batchers behind it (group commit for enqueue, grouped 304
    checks) and the live streams' listener; they stop after the server, so that every request
    in flight at shutdown still gets its answer. Shutdown ends the streams at once: hypercorn
    waits for every response in flight, a stream's included, up to its graceful timeout."""
    async with trio.open_nursery() as nursery:
        await nursery.start(deps.enqueue.serve)
        await nursery.start(deps.unchanged_since.serve)
        if deps.streams is not None:
            await nursery.start(deps.streams.serve, deps.results.database, shutdown)

        async def http(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await serve_http(
                create_app(deps), settings.host, settings.port, shutdown, task_status=task_status
            )
            nursery.cancel_scope.cancel()

        task_status.started(await nursery.start(http))


async def run_until_signalled(settings: Settings, role: Role) -> None:
    """Run the service; SIGTERM or SIGINT starts a graceful shutdown (or cancels the start-up),
    a second one ends the process at once with status 128 + its number (143 for SIGTERM)."""
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # From here on a signal is ours: a process manager may stop the service at any moment.
        log.info("starting", extra={"role": role.value, "pid": os.getpid()})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, shutdown)
            await run_service(settings, role, shutdown)
            nursery.cancel_scope.cancel()


async def _watch_signals(signals: AsyncIterator[int], shutdown: trio.Event) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not shutdown.is_set():
            log.info("shutting down", extra={"signal": name})
            shutdown.set()
            continue
        # The operator will not wait for the grace period: leases expire as after a SIGKILL.
        status = 128 + signum
        log.warning("second signal: exiting at once", extra={"signal": name, "status": status})
        # No unwinding, but the exit functions run: they write the queued log lines and stop
        # what `dev` embeds (pgserver registers its PostgreSQL's stop as one), which an exit
        # this abrupt would otherwise leave running, and pgserver's bookkeeping stale.
        atexit._run_exitfuncs()
        os._exit(status)
