"""Log lines are written off the Trio thread: a stdout nobody reads for a while stalls
neither HTTP nor anything else, and every line logged before exit still reaches stdout."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from typing import Any

import httpx
import trio

from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS
from tests.support.processes import service_environment

SECRET_QUERY = "X-Amz-Signature=SECRET0123456789"
ENQUEUES = 200  # ~2 KiB per line: several times what a pipe buffers (64 KiB)
REQUEST_GUARD_SECONDS = 5.0  # an answer takes milliseconds; a stalled Trio thread never answers


class Lines:
    """Reads a child's stdout as lines, only when asked to."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def until(self, event: str) -> dict[str, Any]:
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                parsed: dict[str, Any] = json.loads(line)
                if parsed["event"] == event:
                    return parsed
            chunk = await self.stream.receive_some()
            assert chunk, f"stdout ended before {event!r}"
            self.buffer += chunk

    async def rest(self) -> list[str]:
        while chunk := await self.stream.receive_some():
            self.buffer += chunk
        return self.buffer.decode().splitlines()


async def test_a_stdout_nobody_reads_stalls_no_answer_and_loses_no_line(
    settings: Settings,
) -> None:
    with tempfile.TemporaryFile() as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bgchallenge", "serve", "--role", "web"],
            env=service_environment(settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            assert process.stdout is not None
            lines = Lines(process.stdout)
            with trio.fail_after(IO_GUARD_SECONDS):
                base = (await lines.until("ready"))["addresses"][0]
            # From here on nobody reads stdout until the process has been told to stop.
            padding = "p" * 1900
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                for n in range(ENQUEUES):
                    url = f"http://127.0.0.1:9/{padding}/{n}.png?{SECRET_QUERY}"
                    body = {"jobId": "p", "url": url}
                    with trio.fail_after(REQUEST_GUARD_SECONDS):
                        answer = await client.post("/results/enqueue", json=body)
                    assert answer.status_code == 202
                with trio.fail_after(REQUEST_GUARD_SECONDS):
                    assert (await client.get("/health")).status_code == 200
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(IO_GUARD_SECONDS):
                written = await lines.rest()
                status = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            stderr.seek(0)
            print(stderr.read().decode(errors="replace")[-4000:])
    assert status == 0
    events = [json.loads(line) for line in written]  # every line whole, one JSON object each
    enqueued = [e for e in events if e["event"] == "enqueued"]
    assert len(enqueued) == ENQUEUES
    assert all(SECRET_QUERY not in line for line in written)  # still redacted
    # logged behind ~400 KiB still queued, just before exit
    assert "shutting down" in [e["event"] for e in events], events[-3:]
