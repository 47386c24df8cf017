"""The origin HTTP edge: the only module that uses httpx.

One `httpx.AsyncClient` with timeouts; its network backend checks every address it connects to
(every redirect hop included, and the address actually connected to, so a name that resolves
differently a second time cannot slip through). Errors surface as `Failure`s.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
import trio

from bgchallenge.domain.failures import (
    Failure,
    check_image_headers,
    failure_for_status,
    too_large,
)
from bgchallenge.domain.network import AddressGuard

MAX_REDIRECTS = 5
HEAD_REFUSED = (403, 405)  # a presigned GET URL is signed for GET only


class BlockedAddress(Exception):
    """The host resolves only to addresses the guard refuses."""


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
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
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


class Fetcher:
    """Validates and streams remote images. Every method raises only `Failure` (and Cancelled)."""

    def __init__(
        self, guard: AddressGuard, *, connect_timeout: float, read_timeout: float, max_bytes: int
    ) -> None:
        self.max_bytes = max_bytes
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
    async def open(self, url: str) -> AsyncIterator[Download]:
        """Check the file with HEAD (or on the GET headers when HEAD is refused), then stream it.

        The yielded download's chunks stop with a ``too_large`` failure past the size limit.
        """
        with _mapped_errors():
            head = await self.client.head(url)
            if head.status_code not in HEAD_REFUSED:
                self._check(head, "HEAD")
            async with self.client.stream("GET", url) as response:
                self._check(response, "GET")
                yield Download(
                    content_type=response.headers["Content-Type"].strip(),
                    chunks=self._limited(response),
                )

    def _check(self, response: httpx.Response, method: str) -> None:
        failure = failure_for_status(response.status_code, method) or check_image_headers(
            response.headers.get("Content-Type"),
            response.headers.get("Content-Length"),
            self.max_bytes,
        )
        if failure:
            raise failure

    async def _limited(self, response: httpx.Response) -> AsyncIterator[bytes]:
        received = 0
        with _mapped_errors():
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > self.max_bytes:
                    raise too_large(received, self.max_bytes)
                yield chunk


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except BlockedAddress as exc:
        raise Failure("blocked_address", str(exc)) from exc
    except (httpx.TooManyRedirects, httpx.UnsupportedProtocol) as exc:
        raise Failure("bad_redirect", str(exc)) from exc
    except httpx.InvalidURL as exc:
        raise Failure("bad_redirect", f"invalid URL: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise Failure("origin_unavailable", f"timed out: {type(exc).__name__}") from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise Failure("origin_unavailable", f"{type(exc).__name__}: {exc}") from exc
