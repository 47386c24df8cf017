"""HTTP/1.1 by hand, for what a client library hides: one kept-alive connection, a slow body."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio


async def open_connection(base_url: str) -> trio.SocketStream:
    address = urlsplit(base_url)
    assert address.hostname is not None and address.port is not None
    return await trio.open_tcp_stream(address.hostname, address.port)


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """One response with a Content-Length, taken off ``buffer``: its status and body."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            raise EOFError(bytes(buffer))
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
    )
    end = len(head) + 4 + length
    while len(buffer) < end:
        chunk = await stream.receive_some()
        if not chunk:
            raise EOFError(bytes(buffer))
        buffer += chunk
    body = bytes(buffer[len(head) + 4 : end])
    del buffer[:end]
    return int(lines[0].split()[1]), body


async def slow_request_then_health(
    base_url: str, head: bytes, body: bytes
) -> tuple[int, bytes, int]:
    """Send ``head`` (request line and headers, without Content-Length), then ``body`` a little
    later (a slow client), then ``GET /health`` on the same kept-alive connection: the first
    answer's status and body, and the second answer's status."""
    buffer = bytearray()
    async with await open_connection(base_url) as stream:
        await stream.send_all(head + b"Content-Length: %d\r\n\r\n" % len(body))
        await trio.sleep(0.2)  # a slow client: the body comes later
        await stream.send_all(body)
        status, answer = await read_response(stream, buffer)
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        health, _ = await read_response(stream, buffer)
    return status, answer, health
