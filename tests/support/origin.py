"""A real origin HTTP server on loopback, with knobs in the query string of /files/<name>.

    size=N            body length (default 1000); the body is a fixed byte pattern that starts
                      with PNG's signature (the workers check the first bytes); a name given
                      bytes with `put` serves those instead, whatever the size
    type=T            Content-Type of GET and HEAD (default image/png)
    status=S          GET status (default 200)
    head=S            HEAD status (default: the GET status); 405 or 403 refuse HEAD
    head_length=N     Content-Length HEAD announces (a lie, if it differs from size)
    chunked=1         GET sends no Content-Length
    fail=N            the first N GETs of this name answer 503
    slow=SECONDS      pause between 64 KiB chunks
    trickle=SECONDS   send the body one byte at a time, pausing before each
    gzip=1            the body is ``size`` zero bytes gzip-compressed (a "gzip bomb"), sent with
                      Content-Encoding: gzip (GET and HEAD) and its compressed length
    redirect=URL      answer 302 to URL (GET and HEAD)
    delay=SECONDS     GET pauses before its status line
    hold=1            GET answers only once the test calls `Origin.release` for this name

It counts requests by (method, name), so tests can say "fetched exactly once". A test may
override a name's knobs later (`override`): the origin changes its answers under stored URLs.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

CHUNK = 64 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PATTERN = PNG_SIGNATURE + bytes(i % 251 for i in range(len(PNG_SIGNATURE), CHUNK))

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def body_chunks(size: int) -> Iterator[bytes]:
    remaining = size
    while remaining > 0:
        piece = _PATTERN[: min(CHUNK, remaining)]
        remaining -= len(piece)
        yield piece


@functools.cache
def gzip_bomb(size: int) -> bytes:
    return gzip.compress(bytes(size), compresslevel=9)


def body_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in body_chunks(size):
        digest.update(piece)
    return digest.hexdigest()


async def answer_lifespan(receive: Any, send: Send) -> None:
    """The ASGI lifespan protocol of a test server with nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Origin:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.get_times: dict[str, list[float]] = {}
        self.base_url = ""
        self.overrides: dict[str, dict[str, str]] = {}
        self.released: dict[str, trio.Event] = {}
        self.files: dict[str, bytes] = {}

    def put(self, name: str, body: bytes) -> None:
        """Serve ``body`` as ``name`` (the other knobs still apply)."""
        self.files[name] = body

    def override(self, name: str, **knobs: object) -> None:
        """From now on, answer ``name`` as if the URL carried these knobs too."""
        self.overrides[name] = {k: str(v) for k, v in knobs.items()}

    def url(self, name: str, **knobs: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in knobs.items())
        return f"{self.base_url}/files/{name}" + (f"?{query}" if query else "")

    def release(self, name: str) -> None:
        """Let the held GETs of ``name`` (knob ``hold=1``) answer."""
        self.released.setdefault(name, trio.Event()).set()

    def gets(self, name: str) -> int:
        return self.requests[("GET", name)]

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        name = scope["path"].rsplit("/", 1)[-1]
        method = scope["method"]
        self.requests[(method, name)] += 1
        knobs = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        knobs.update(self.overrides.get(name, {}))
        given = self.files.get(name)
        size = len(given) if given is not None else int(knobs.get("size", 1000))
        content_type = knobs.get("type", "image/png").encode()
        status = int(knobs.get("status", 200))
        if "redirect" in knobs:
            await self._start(send, 302, [(b"location", knobs["redirect"].encode())])
            await send({"type": "http.response.body", "body": b""})
            return
        encoding: list[tuple[bytes, bytes]] = []
        if knobs.get("gzip") == "1":
            encoding = [(b"content-encoding", b"gzip")]
            size = len(gzip_bomb(size))
        if method == "HEAD":
            length = knobs.get("head_length", str(size)).encode()
            await self._start(
                send,
                int(knobs.get("head", status)),
                [(b"content-type", content_type), (b"content-length", length), *encoding],
            )
            await send({"type": "http.response.body", "body": b""})
            return
        self.get_times.setdefault(name, []).append(trio.current_time())
        if self.requests[("GET", name)] <= int(knobs.get("fail", 0)):
            status = 503
        if knobs.get("hold") == "1":
            await self.released.setdefault(name, trio.Event()).wait()
        if "delay" in knobs:
            await trio.sleep(float(knobs["delay"]))
        headers = [(b"content-type", content_type), *encoding]
        if knobs.get("chunked") != "1":
            headers.append((b"content-length", str(size).encode()))
        await self._start(send, status, headers)
        if status == 200 and encoding:
            bomb = gzip_bomb(int(knobs.get("size", 1000)))
            await send({"type": "http.response.body", "body": bomb, "more_body": True})
        elif status == 200 and "trickle" in knobs:
            pieces = body_chunks(size) if given is None else iter([given])
            await self._trickle(send, pieces, float(knobs["trickle"]))
        elif status == 200 and given is not None:
            await send({"type": "http.response.body", "body": given, "more_body": True})
        elif status == 200:
            slow = float(knobs.get("slow", 0))
            for piece in body_chunks(size):
                if slow:
                    await trio.sleep(slow)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _trickle(send: Send, pieces: Iterator[bytes], pause: float) -> None:
        for piece in pieces:
            for index in range(len(piece)):
                await trio.sleep(pause)
                byte = piece[index : index + 1]
                await send({"type": "http.response.body", "body": byte, "more_body": True})

    @staticmethod
    async def _start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})


async def serve_origin(
    origin: Origin, *, task_status: trio.TaskStatus[Origin] = trio.TASK_STATUS_IGNORED
) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None

    class _Status:
        def started(self, binds: list[str]) -> None:
            origin.base_url = binds[0]
            task_status.started(origin)

    await serve(origin, config, task_status=_Status())  # type: ignore[arg-type]


async def _serve_forever() -> None:
    origin = Origin()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_origin, origin)
        print(origin.base_url, flush=True)


if __name__ == "__main__":
    # For benchmarks: the origin in a process of its own; prints its base URL, then serves.
    trio.run(_serve_forever)
