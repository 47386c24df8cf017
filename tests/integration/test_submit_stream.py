"""``bgchallenge submit --wait`` following ``GET /results/stream``, as a child process.

The service's own stream is not needed here: a small API on loopback streams as docs/http.md's "Live
stream" says (tests/support/sse.py), scripted so that each test decides what every stream
connection sends and how it ends. What the command does with a real service that has no stream
is in test_submit.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from bgchallenge.domain.signing import sign
from tests.conftest import IO_GUARD_SECONDS
from tests.integration.test_submit import progress_lines, submit, url_file
from tests.support.sse import Dropped, EventWriter, Request, ScriptedApi


def _result(result_id: int, status: str, **members: Any) -> dict[str, Any]:
    return {
        "id": result_id,
        "jobId": "j",
        "url": f"http://o/{result_id}.png",
        "status": status,
        "error": None,
        "progress": None,
        **members,
    }


def _api(stream: Any) -> ScriptedApi:
    """Three new URLs (ids 1-3) and one already enqueued (id 7, already succeeded)."""
    return ScriptedApi(
        urls={
            "http://o/1.png": (202, 1),
            "http://o/2.png": (202, 2),
            "http://o/3.png": (202, 3),
            "http://o/7.png": (409, 7),
        },
        results={
            1: _result(1, "queued"),
            2: _result(2, "queued"),
            3: _result(3, "queued"),
            7: _result(7, "succeeded"),
            9: _result(9, "running"),  # somebody else's result of the job: not waited for
        },
        stream=stream,
    )


URLS = [f"http://o/{n}.png" for n in (1, 2, 3, 7)]
NOT_FOUND = {"code": "not_found", "message": "HEAD answered 404"}


async def test_wait_follows_the_stream_and_resumes_with_last_event_id(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    api: ScriptedApi

    async def stream(number: int, request: Request, out: EventWriter) -> None:
        await out.status(200)
        if number == 1:
            await out.event("ready", "p0", {})
            api.log.append("ready")
            await api.listed.wait()  # what changes from here on is an event, not in that list
            await out.event("result", "p1", api.change(1, status="running"))
            await out.event("result", "p2", api.change(1, status="succeeded"))
            await out.send(": keep-alive\n\n")
            raise Dropped  # cut mid-body: the command resumes from p2
        if number == 2:
            # changed while the command was disconnected: replayed after `ready`
            api.change(2, status="failed", error=NOT_FOUND)
            api.change(3, status="running", progress={"receivedBytes": 1536, "totalBytes": 4096})
            await out.event("ready", "p4", {})
            raise Dropped  # before the replay: resumed from p2 again, not from `ready`'s p4
        if number == 3:
            await out.event("ready", "p4", {})
            await out.event("result", "p3", api.results[2])
            raise Dropped  # mid-replay: resumed from p3
        await out.event("ready", "p4", {})
        await out.event("result", "p4", api.results[3])
        await out.send(": keep-alive\n\n")
        await out.event("result", "p5", api.change(3, status="succeeded", progress=None))
        await trio.sleep_forever()  # live: the command leaves once everything is terminal

    api = _api(stream)
    await nursery.start(api.serve)
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit(
            "--job-id",
            "j",
            "--wait",
            url_file(tmp_path, *URLS),
            BGC_SERVER=api.base_url,
            BGC_SIGNING_SECRET="s",
        )
    assert done.returncode == 1, done
    assert done.stdout.splitlines()[:2] == [
        "job j: 3 enqueued, 1 already enqueued, 0 rejected",
        "job j: 3 succeeded, 1 failed, 0 canceled",
    ]
    assert done.stdout.splitlines()[3].split()[:3] == ["2", "http://o/2.png", "not_found"]
    # one list read, right after the first `ready`; then only the stream
    assert api.log == ["stream", "ready", "list", "stream", "stream", "stream"]
    streams = [r for r in api.requests if r.path == "/results/stream"]
    assert [r.headers.get("last-event-id") for r in streams] == [None, "p2", "p2", "p3"]
    for request in streams:
        assert request.query == {"jobId": ["j"]}
        assert request.headers["accept"] == "text/event-stream"
        stamp = request.headers["x-bgc-timestamp"]
        signature = sign("s", stamp, "GET", request.target, b"")
        assert request.headers["x-bgc-signature"] == signature
    bars = progress_lines(done)
    assert bars[-1].startswith("100%  4/4  succeeded 3  failed 1  running 0  queued 0"), bars
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("answer", ["404", "405", "503", "dropped"])
async def test_without_a_stream_it_polls_the_list(
    nursery: trio.Nursery, tmp_path: Path, answer: str
) -> None:
    api: ScriptedApi

    async def stream(number: int, request: Request, out: EventWriter) -> None:
        if answer == "dropped":  # lost before any event, every time
            await out.status(200)
            raise Dropped
        await out.status(int(answer), Retry_After="1")
        # the list then sees everything finish
        for result_id in (1, 2, 3):
            api.change(result_id, status="succeeded")

    api = _api(stream)
    await nursery.start(api.serve)
    if answer == "dropped":
        for result_id in (1, 2, 3):
            api.change(result_id, status="succeeded")
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit(
            "--job-id", "j", "--wait", url_file(tmp_path, *URLS), BGC_SERVER=api.base_url
        )
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        "job j: 3 enqueued, 1 already enqueued, 0 rejected",
        "job j: 4 succeeded, 0 failed, 0 canceled",
    ]
    streams = 4 if answer == "dropped" else 1  # a lost stream is resumed 3 times first
    assert api.log == ["stream"] * streams + ["list"]
    assert progress_lines(done)[-1].startswith("100%  4/4  succeeded 4")
