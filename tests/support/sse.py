"""A small bgchallenge API on loopback that streams as the service's /results/stream does, scripted.

For testing what ``submit --wait`` does with a stream before (or without) the service's own:
HTTP/1.1 by hand over a trio socket, so a test decides each stream connection's events and how
it ends (cleanly, or cut mid-body as a dropped connection is). It answers the three calls the
command makes: ``POST /results/enqueue`` (``urls`` maps each URL to ``(status, id)``),
``GET /results/list`` (every result in ``results``, one page) and ``GET /results/stream``
(``stream(connection_number, request, writer)``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio


@dataclass
class Request:
    method: str
    target: str  # as sent on the wire, query included
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)


class Dropped(Exception):
    """The script cuts the connection mid-body, as a dropped network does."""


class EventWriter:
    """One stream's answer: `status` first, then events; the body is chunked."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def status(self, code: int, **headers: str) -> None:
        head = [f"HTTP/1.1 {code} X"]
        if code == 200:
            head += ["Content-Type: text/event-stream", "Transfer-Encoding: chunked"]
        else:
            head += ["Content-Length: 0", "Connection: close"]
        head += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        await self._stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())

    async def send(self, text: str) -> None:
        data = text.encode()
        await self._stream.send_all(b"%x\r\n%s\r\n" % (len(data), data))

    async def event(self, kind: str, position: str, data: dict[str, Any]) -> None:
        await self.send(f"event: {kind}\nid: {position}\ndata: {json.dumps(data)}\n\n")

    async def end(self) -> None:
        await self._stream.send_all(b"0\r\n\r\n")


StreamScript = Callable[[int, Request, EventWriter], Awaitable[None]]


@dataclass
class ScriptedApi:
    urls: dict[str, tuple[int, int]]
    results: dict[int, dict[str, Any]]
    stream: StreamScript
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # "stream", "list", and what scripts add
    listed: trio.Event = field(default_factory=trio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def change(self, result_id: int, **members: Any) -> dict[str, Any]:
        """A committed change: the result's new state, as an event's data renders it."""
        self.results[result_id] = {**self.results[result_id], **members}
        return self.results[result_id]

    async def serve(self, *, task_status: trio.TaskStatus[ScriptedApi]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            async with stream:
                while (request := await _read_request(stream, buffer)) is not None:
                    self.requests.append(request)
                    if not await self._answer(stream, request):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, Dropped):
            pass  # the client went away, or the script cut the connection

    async def _answer(self, stream: trio.SocketStream, request: Request) -> bool:
        """Answer one request; False when the connection is done."""
        if request.path == "/results/stream":
            self.log.append("stream")
            count = sum(r.path == "/results/stream" for r in self.requests)
            await self.stream(count, request, EventWriter(stream))
            return False
        if request.path == "/results/enqueue":
            status, result_id = self.urls[json.loads(request.body)["url"]]
            member = "id" if status == 202 else "existingId"
            await _json(stream, status, {member: result_id})
        elif request.path == "/results/list":
            self.log.append("list")
            self.listed.set()
            items = [self.results[i] for i in sorted(self.results)]
            await _json(stream, 200, {"items": items, "nextCursor": None})
        else:
            await _json(stream, 404, {"detail": "not found"})
        return True


async def _json(stream: trio.SocketStream, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f'ETag: "{hash(data)}"\r\nContent-Length: {len(data)}\r\n\r\n'
    )
    await stream.send_all(head.encode() + data)


async def _read_request(stream: trio.SocketStream, buffer: bytearray) -> Request | None:
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            return None
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[: len(head) + 4]
    first, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = first.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        chunk = await stream.receive_some()
        if not chunk:
            return None
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return Request(method, target, headers, body)
