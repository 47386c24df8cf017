"""The origin HTTP edge: the only module that uses httpx.

One `httpx.AsyncClient` with timeouts; its network backend checks every address it connects to
(every redirect hop included, and the address actually connected to, so a name that resolves
differently a second time cannot slip through). Errors surface as `Failure`s whose messages
name no address the service resolved and say the same for every way a connection can fail
(refused, unreachable, timed out, unresolvable): clients must not map the service's network
through them. The detail goes to the service's own log.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpcore
import httpx
import trio

from bgchallenge.domain.expiry import is_expired
from bgchallenge.domain.failures import (
    Failure,
    check_content_encoding,
    check_image_headers,
    failure_for_status,
    too_large,
    too_slow,
    url_expired,
)
from bgchallenge.domain.network import AddressGuard
from bgchallenge.domain.rate import RateFloor
from bgchallenge.domain.transfer import content_length

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
HEAD_REFUSED = (403, 405)  # a presigned GET URL is signed for GET only
BLOCKED_MESSAGE = "the host's address is not allowed"
CONNECT_FAILED_MESSAGE = "could not connect to the origin"


class BlockedAddress(Exception):
    """The host resolves only to addresses the guard refuses."""


class CheckedOnReuseStream(httpcore.AsyncNetworkStream):
    """A connection that is asked whether the origin closed it only when it is about to carry
    a request again, instead of every time the pool looks at it.

    httpcore's pool asks that (a ``poll`` of the socket) of every idle connection, twice for
    every request, not just of the one it is about to use: with 16 workers that was ~10 % of
    the worker process's CPU under `bench.throughput` (httpcore's own pull request to poll less,
    encode/httpcore#928, is not merged). Here the pool is told "not closed", and the question
    is asked once, at the first write of a request on a connection that carried one before.
    Closed: `httpcore.ConnectionNotAvailable`, on which the pool closes this connection and
    sends the request on another, as it would have had it seen the close itself.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        self.reused = False  # it has read an answer: the next write starts a request on reuse

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self.reused = True
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self.reused:
            self.reused = False
            if self.inner.get_extra_info("is_readable"):
                raise httpcore.ConnectionNotAvailable("the origin closed the idle connection")
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return CheckedOnReuseStream(
            await self.inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return False  # asked on reuse instead, in `write`
        return self.inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves names itself and connects only to addresses the guard allows."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self.inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out")
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if self.guard.allows(a)]
        if not allowed:
            raise BlockedAddress(f"{host} resolves to {', '.join(addresses)}: not allowed")
        last_error: Exception | None = None
        for address in allowed:
            try:
                return CheckedOnReuseStream(
                    await self.inner.connect_tcp(
                        address,
                        port,
                        timeout=timeout,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("Unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


def guarded_transport(guard: AddressGuard) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx has no public parameter for the network backend; its pool is the seam.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(guard),
    )
    return transport


@dataclass
class Download:
    content_type: str
    chunks: AsyncIterator[bytes]
    length: int | None = None  # the GET's Content-Length; None for a chunked body


class Fetcher:
    """Validates and streams remote images. Every method raises only `Failure` (and Cancelled)."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_bytes: int,
        min_rate: int = 0,
    ) -> None:
        self.max_bytes = max_bytes
        self.min_rate = min_rate
        self.rate_window = read_timeout
        self.client = httpx.AsyncClient(
            transport=guarded_transport(guard),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"Accept-Encoding": "identity", "User-Agent": "bgchallenge/0.1"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    @asynccontextmanager
    async def open(self, url: str, expires_at: datetime | None = None) -> AsyncIterator[Download]:
        """Check the file with HEAD (or on the GET headers when HEAD is refused), then stream it.

        The yielded download's chunks are the bytes as sent (a compressed body is refused, never
        decoded); they stop with a ``too_large`` failure past the size limit, and with an
        ``origin_unavailable`` one when fewer than ``min_rate`` bytes arrive in a read timeout's
        worth of waiting. A URL past ``expires_at`` is ``url_expired`` without a request, and
        so is a ``401``/``403`` answered after it.
        """
        if expires_at is not None and is_expired(expires_at, datetime.now(UTC)):
            raise url_expired(expires_at)
        with _mapped_errors(url):
            head = await self.client.head(url)
            if head.status_code not in HEAD_REFUSED:
                self._check(head, "HEAD", expires_at)
            async with self.client.stream("GET", url) as response:
                self._check(response, "GET", expires_at)
                async with aclosing(self._limited(response)) as chunks:
                    yield Download(
                        content_type=response.headers["Content-Type"].strip(),
                        chunks=chunks,
                        length=content_length(response.headers.get("Content-Length")),
                    )

    def _check(
        self, response: httpx.Response, method: str, expires_at: datetime | None = None
    ) -> None:
        # The clock is read when the answer is in: a refusal after the expiry means just that.
        expired = expires_at if is_expired(expires_at, datetime.now(UTC)) else None
        failure = (
            failure_for_status(response.status_code, method, expired)
            or check_content_encoding(response.headers.get("Content-Encoding"))
            or check_image_headers(
                response.headers.get("Content-Type"),
                response.headers.get("Content-Length"),
                self.max_bytes,
            )
        )
        if failure:
            raise failure

    async def _limited(self, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        """The raw body (``aiter_bytes`` would decode whatever encoding arrived), checked.

        The rate is measured on the time spent waiting for the origin only: the time the consumer
        spends uploading a part is not the origin's (its bytes wait in the socket buffer).
        """
        received = 0
        waited = 0.0
        floor = RateFloor(self.min_rate, self.rate_window)
        with _mapped_errors(str(response.url)):
            # httpx annotates it as an iterator; it is an async generator, closed here on time
            raw_body = cast(AsyncGenerator[bytes, None], response.aiter_raw())
            async with aclosing(raw_body) as raw:
                while True:
                    before = trio.current_time()
                    try:
                        chunk = await anext(raw)
                    except StopAsyncIteration:
                        return
                    waited += trio.current_time() - before
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise too_large(received, self.max_bytes)
                    if not floor.received(len(chunk), waited):
                        raise too_slow(self.min_rate, self.rate_window)
                    yield chunk


@contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    try:
        yield
    except BlockedAddress as exc:
        log.warning("origin address refused", extra={"url": url, "detail": str(exc)})
        raise Failure("blocked_address", BLOCKED_MESSAGE) from exc
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        log.info("origin connection failed", extra={"url": url, "detail": detail})
        raise Failure("origin_unavailable", CONNECT_FAILED_MESSAGE) from exc
    except (httpx.TooManyRedirects, httpx.UnsupportedProtocol) as exc:
        raise Failure("bad_redirect", str(exc)) from exc
    except httpx.InvalidURL as exc:
        raise Failure("bad_redirect", f"invalid URL: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise Failure("origin_unavailable", f"timed out: {type(exc).__name__}") from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise Failure("origin_unavailable", f"{type(exc).__name__}: {exc}") from exc
