"""Embedded servers on loopback for `bgchallenge dev` and the tests: PostgreSQL and S3.

PostgreSQL comes from the ``pgserver`` package (real binaries from PyPI, data in a folder that
survives restarts); S3 is moto's server in a child process. Both are development tools: they
are imported only here, and only when asked for.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MOTO_START_SECONDS = 30.0


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def start_postgres(data_dir: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir``; answer pgserver's handle."""
    try:
        from pgserver import get_server  # type: ignore[attr-defined]
    except ImportError as exc:
        raise EmbeddedError(
            "the embedded PostgreSQL needs the 'dev' extra: pip install -e '.[dev]'"
        ) from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (as under CI); /tmp is fine.
            warnings.simplefilter("ignore")
            return get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:
        raise EmbeddedError(f"embedded PostgreSQL in {data_dir} did not start: {exc}") from exc


def _wait_for_port(process: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    """Sync start-up code, run before any Trio loop: waiting on the child doubles as the pause
    between attempts, and notices at once if it exits."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        try:
            status = process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise EmbeddedError(f"the S3 server exited at start (status {status})")
    process.kill()
    raise EmbeddedError(f"the S3 server did not listen on port {port} within the time allowed")


@contextmanager
def running_s3_server(port: int | None = None) -> Iterator[str]:
    """Run moto's S3 server on loopback in a child process; yield its endpoint URL."""
    port = port or free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Also at exit: a second signal ends the process without unwinding this block (it runs the
    # exit functions, as pgserver's stop of the embedded PostgreSQL is one too).
    atexit.register(process.kill)
    try:
        _wait_for_port(process, port, time.monotonic() + MOTO_START_SECONDS)
        yield f"http://127.0.0.1:{port}"
    finally:
        atexit.unregister(process.kill)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def set_fake_aws_credentials(environ: dict[str, str] | Any = os.environ) -> None:
    """moto accepts any credentials, but boto3 wants some: set them unless already set."""
    environ.setdefault("AWS_ACCESS_KEY_ID", "bgchallenge")
    environ.setdefault("AWS_SECRET_ACCESS_KEY", "bgchallenge")
    environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
