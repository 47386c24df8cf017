"""The ``bgchallenge`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import trio

from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.db.migrate import MigrationFailed
from bgchallenge.logs import configure_logging
from bgchallenge.settings import QUEUES, Settings, SettingsError
from bgchallenge.storage.s3 import StorageRejected, StorageUnavailable
from bgchallenge.work.queue import QueueUnavailable

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXPECTED_FAILURES = (
    DatabaseUnavailable,
    MigrationFailed,
    StorageUnavailable,
    StorageRejected,
    QueueUnavailable,
    OSError,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One clear line, exit status 2 (argparse would print the usage as well)."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bgchallenge",
        description="Copies remote images into object storage, reliably and in the background.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the service from the environment's settings")
    serve.add_argument("--host", help="address to listen on (default: $BGC_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT or 8000)")
    serve.add_argument(
        "--role",
        choices=["all", "web", "worker"],
        default="all",
        help="which parts to run: HTTP server, workers, or both (default: all)",
    )

    commands.add_parser("migrate", help="apply the database migrations and exit")

    dev = commands.add_parser(
        "dev", help="embedded PostgreSQL and S3 on loopback, then serve (no setup needed)"
    )
    dev.add_argument("--port", type=int, help="port to listen on (default: $PORT or 8000)")
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".bgchallenge"),
        help="where the embedded PostgreSQL keeps its data (default: ./.bgchallenge)",
    )
    dev.add_argument(
        "--queue",
        choices=QUEUES,
        help="what carries the work (default: $BGC_QUEUE or postgres); sqs: a queue on the "
        "embedded S3 server (moto serves both); rabbitmq: the broker at $RABBITMQ_URL",
    )

    submit = commands.add_parser(
        "submit", help="enqueue URLs (one per line) for a job; --wait follows them to the end"
    )
    submit.add_argument("--job-id", required=True, help="the job the URLs belong to")
    submit.add_argument(
        "--server", help="the service's base URL (default: $BGC_SERVER or http://127.0.0.1:$PORT)"
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="show progress until every result of the job is terminal, then the failures",
    )
    submit.add_argument(
        "file", nargs="?", metavar="FILE", help="URLs one per line; '-' or none: stdin"
    )
    return parser


def _fail(message: str, status: int) -> int:
    print(f"bgchallenge: {message}", file=sys.stderr)
    return status


def _expected_failure(error: BaseException) -> BaseException | None:
    """The first expected failure inside ``error`` (trio wraps errors in groups)."""
    if isinstance(error, EXPECTED_FAILURES):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _expected_failure(inner)
            if found is not None:
                return found
    return None


def _with_port(settings: Settings, port: int | None) -> Settings:
    if port is None:
        return settings
    if not 0 <= port <= 65535:
        raise SettingsError([f"--port: must be between 0 and 65535, not {port}"])
    return dataclasses.replace(settings, port=port)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; a closed stdout (``| head``, ``>&-``) ends it quietly."""
    if sys.stdout is None:  # started with fd 1 closed: whatever we print goes nowhere
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (stdout lives as long as we do)
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here rather than at the interpreter's exit
    except BrokenPipeError:
        # Python's documented recipe (the signal module's "Note on SIGPIPE"): point stdout at
        # devnull so that the interpreter's last flush cannot fail again, and exit 1.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "submit":
        return _submit(args)
    try:
        settings = _with_port(Settings.from_env(os.environ), getattr(args, "port", None))
        if getattr(args, "host", None):
            settings = dataclasses.replace(settings, host=args.host)
        if args.command == "dev" and args.queue:
            settings = dataclasses.replace(settings, queue=args.queue)
        if args.command == "dev" and settings.queue == "rabbitmq":
            settings.require_queue()  # dev embeds no broker
        if args.command != "dev":
            settings.require_database()
        if args.command == "serve":
            settings.require_queue()
    except SettingsError as exc:
        for line in exc.problems:
            print(f"bgchallenge: {line}", file=sys.stderr)
        return EXIT_USAGE

    # the thread writing log lines to stdout lives as long as the command; stopped below
    log_writer = configure_logging()
    try:
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "dev":
            return _dev(settings, args.data_dir)
        return _serve(settings, args.role)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:
        failure = _expected_failure(exc)
        if failure is None:
            raise
        if isinstance(failure, BrokenPipeError):
            raise failure from None  # stdout closed: `main` ends quietly
        # a role without the privileges, or the wrong database, is a bad setting
        bad_setting = isinstance(failure, MigrationFailed) and failure.bad_setting
        return _fail(
            f"{type(failure).__name__}: {failure}", EXIT_USAGE if bad_setting else EXIT_FAILURE
        )
    finally:
        log_writer.stop()  # writes every line still queued: none logged before exit is lost


def _serve(settings: Settings, role: str) -> int:
    from bgchallenge.service import Role, run_until_signalled

    trio.run(run_until_signalled, settings, Role(role))
    return 0


def _migrate(settings: Settings) -> int:
    from bgchallenge.db.database import open_database
    from bgchallenge.db.migrate import migrate

    async def run() -> list[str]:
        async with open_database(settings.require_database(), max_size=2) as database:
            return await migrate(database)

    applied = trio.run(run)
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return 0


def _dev(settings: Settings, data_dir: Path) -> int:
    from bgchallenge.embedded import (
        EmbeddedError,
        running_s3_server,
        set_fake_aws_credentials,
        start_postgres,
    )
    from bgchallenge.queues.sqs import DEV_QUEUE_NAME, ensure_queue
    from bgchallenge.service import Role, create_storage, run_until_signalled

    loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    try:
        postgres = start_postgres(data_dir.resolve() / "pgdata")
        with running_s3_server() as s3_url:
            set_fake_aws_credentials()
            settings = dataclasses.replace(
                settings,
                database_url=settings.database_url or postgres.get_uri(),
                s3_endpoint_url=settings.s3_endpoint_url or s3_url,
                allow_networks=settings.allow_networks or loopback,
            )
            trio.run(create_storage(settings).ensure_bucket)
            if settings.queue == "sqs" and not settings.sqs_queue_url:
                # moto serves SQS on the same port as S3
                endpoint = settings.sqs_endpoint_url or s3_url
                url = trio.run(ensure_queue, endpoint, DEV_QUEUE_NAME)
                settings = dataclasses.replace(
                    settings, sqs_endpoint_url=endpoint, sqs_queue_url=url
                )
            print(f"PostgreSQL: {settings.database_url}  (data in {data_dir / 'pgdata'})")
            print(f"S3:         {settings.s3_endpoint_url}  bucket {settings.s3_bucket}")
            print(f"Queue:      {_queue_line(settings)}")
            print(f"HTTP:       http://{settings.host}:{settings.port}")
            sys.stdout.flush()
            trio.run(run_until_signalled, settings, Role.ALL)
    except EmbeddedError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    return 0


def _queue_line(settings: Settings) -> str:
    if settings.queue == "sqs":
        return f"sqs {settings.sqs_queue_url}"
    if settings.queue == "rabbitmq":
        return f"rabbitmq {settings.rabbitmq_queue}"
    return "postgres (the results table)"


def _submit(args: argparse.Namespace) -> int:
    """A client of the API: only the settings it uses are read (a server's own, like
    DATABASE_URL, may be absent or meant for another machine)."""
    from bgchallenge.client import SubmitError, UsageError, prepare, submit

    try:
        used = {k: v for k, v in os.environ.items() if k in ("PORT", "BGC_SIGNING_SECRET")}
        settings = Settings.from_env(used)
    except SettingsError as exc:
        return _fail(exc.problems[0], EXIT_USAGE)
    try:
        options = prepare(
            job_id=args.job_id,
            server=args.server,
            source=args.file,
            wait=args.wait,
            env=os.environ,
            port=settings.port,
            secret=settings.signing_secret,
            stdin=sys.stdin,
        )
        return submit(options, out=sys.stdout, err=sys.stderr)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SubmitError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        # end a half-drawn progress line; what was enqueued carries on in the service
        print(file=sys.stderr)
        return _fail("interrupted; enqueued results carry on in the service", 130)
