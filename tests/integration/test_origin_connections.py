"""Kept-alive origin connections: reused while the origin keeps them, replaced when it closed
one without saying so (no ``Connection: close``), which the fetcher checks as it reuses it."""

from __future__ import annotations

import ipaddress
from functools import partial

import trio

from bgchallenge.domain.network import AddressGuard
from bgchallenge.work.fetch import Fetcher
from tests.conftest import IO_GUARD_SECONDS

BODY = b"\x89PNG\r\n\x1a\n" + bytes(92)
LOOPBACK = AddressGuard((ipaddress.ip_network("127.0.0.0/8"),))


class Origin:
    """Answers ``requests_per_connection`` requests on a connection, then closes it."""

    def __init__(self, requests_per_connection: int) -> None:
        self.requests_per_connection = requests_per_connection
        self.connections = 0
        self.closed = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = bytearray()
        async with stream:
            for _ in range(self.requests_per_connection):
                while b"\r\n\r\n" not in buffer:
                    chunk = await stream.receive_some()
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
                buffer = bytearray(rest)
                body = b"" if head.startswith(b"HEAD ") else BODY
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(BODY), body)
                )
        self.closed.set()


async def fetch_twice(origin: Origin) -> list[bytes]:
    """Two downloads one after the other (HEAD + GET each), the second once the origin has
    closed a connection (if it closes one)."""
    bodies = []
    fetcher = Fetcher(LOOPBACK, connect_timeout=5, read_timeout=5, max_bytes=1000)
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, origin.handle, 0, host="127.0.0.1")
                )
                port = listeners[0].socket.getsockname()[1]
                url = f"http://127.0.0.1:{port}/a.png"
                for second in (False, True):
                    if second and origin.requests_per_connection == 2:
                        await origin.closed.wait()
                    async with fetcher.open(url) as download:
                        bodies.append(b"".join([chunk async for chunk in download.chunks]))
                nursery.cancel_scope.cancel()
    finally:
        await fetcher.aclose()
    return bodies


async def test_a_connection_the_origin_keeps_is_reused() -> None:
    origin = Origin(requests_per_connection=100)
    assert await fetch_twice(origin) == [BODY, BODY]
    assert origin.connections == 1


async def test_a_connection_the_origin_closed_is_replaced_not_failed() -> None:
    """The origin closes after the first HEAD + GET: the second HEAD goes on a new connection
    instead of failing on the closed one."""
    origin = Origin(requests_per_connection=2)
    assert await fetch_twice(origin) == [BODY, BODY]
    assert origin.connections == 2
