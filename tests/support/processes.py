"""The service as a child process, as a process manager would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from bgchallenge.settings import Settings


def service_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGC_")}
    env.update(
        DATABASE_URL=settings.database_url or "",
        S3_ENDPOINT_URL=settings.s3_endpoint_url or "",
        S3_BUCKET=settings.s3_bucket,
        PORT="0",
        BGC_ALLOW_NETWORKS=",".join(str(n) for n in settings.allow_networks),
        BGC_RETRY_DELAYS=",".join(str(d) for d in settings.retry_delays),
        BGC_SWEEP_SECONDS=str(settings.sweep_seconds),
        BGC_QUEUE=settings.queue,
        SQS_QUEUE_URL=settings.sqs_queue_url or "",
        SQS_ENDPOINT_URL=settings.sqs_endpoint_url or "",
        BGC_SQS_WAIT_SECONDS=str(settings.sqs_wait_seconds),
        RABBITMQ_URL=settings.rabbitmq_url or "",
        BGC_RABBITMQ_QUEUE=settings.rabbitmq_queue,
    )
    env.update(overrides)
    return env


class ServiceProcess:
    """``bgchallenge serve`` in a child process; its JSON log lines go to a file."""

    def __init__(
        self,
        settings: Settings,
        role: str = "worker",
        *,
        command: Sequence[str] = ("serve",),
        **env: str,
    ) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="bgc-service-", suffix=".log")[1])
        self._log = self.log_path.open("w")
        role_args = ["--role", role] if command[0] == "serve" else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bgchallenge", *command, *role_args],
            env=service_environment(settings, **env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"event": "unparsed", "line": line})
        return lines

    def logs(self) -> str:
        return self.log_path.read_text()

    async def wait_ready(self, within: float = 30.0) -> dict[str, Any]:
        return await self.wait_event("ready", within)

    async def wait_event(self, name: str, within: float = 30.0) -> dict[str, Any]:
        """Poll the log (a file another process writes) until a line says ``name``."""
        with trio.fail_after(within):
            while True:
                for event in self.events():
                    if event.get("event") == name:
                        return event
                if self.process.poll() is not None:
                    raise AssertionError(f"service exited before {name!r}:\n{self.logs()}")
                await trio.sleep(0.05)

    def rss_kib(self, field: str) -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, within: float = 30.0) -> int:
        """The exit status; ``within`` really bounds the wait (the thread blocked in ``wait()``
        is abandoned, and ends when `close` kills the process)."""
        with trio.fail_after(within):
            return await trio.to_thread.run_sync(self.process.wait, abandon_on_cancel=True)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
