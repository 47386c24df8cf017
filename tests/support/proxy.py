"""A loopback TCP proxy in front of PostgreSQL whose two directions can be frozen.

Frozen, it holds every byte it has read (nothing reaches the other side) until thawed or
closed; closing drops what it holds. A test freezes the way to the server to keep a process's
next statement from ever running, or the way back to keep a committed statement's answer
from arriving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import trio
from psycopg.conninfo import conninfo_to_dict


@dataclass
class Gate:
    frozen: bool = False
    _thawed: trio.Event = field(default_factory=trio.Event)

    def freeze(self) -> None:
        self.frozen = True
        self._thawed = trio.Event()

    def thaw(self) -> None:
        self.frozen = False
        self._thawed.set()

    async def passage(self) -> None:
        while self.frozen:
            await self._thawed.wait()


@dataclass
class Proxy:
    url: str  # the database URL through the proxy
    to_server: Gate
    to_client: Gate

    def freeze(self) -> None:
        self.to_server.freeze()
        self.to_client.freeze()


def _connect_target(database_url: str) -> tuple[str, int, str | None]:
    """(host, port, unix socket path or None) of the server ``database_url`` names."""
    info = conninfo_to_dict(database_url)
    host = str(info.get("host") or "/tmp")
    port = int(info.get("port") or 5432)
    if host.startswith("/"):
        return host, port, f"{host}/.s.PGSQL.{port}"
    return host, port, None


def _proxied_url(database_url: str, port: int) -> str:
    info = conninfo_to_dict(database_url)
    user = str(info.get("user") or "postgres")
    password = info.get("password")
    credentials = f"{user}:{password}" if password else user
    return f"postgresql://{credentials}@127.0.0.1:{port}/{info.get('dbname') or user}"


async def _pump(source: trio.abc.Stream, sink: trio.abc.Stream, gate: Gate) -> None:
    try:
        async for chunk in source:
            await gate.passage()
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await sink.aclose()


@asynccontextmanager
async def postgres_proxy(database_url: str) -> AsyncIterator[Proxy]:
    """Serve a proxy to ``database_url``'s server until the block ends (connections closed)."""
    host, port, socket_path = _connect_target(database_url)

    async def handle(client: trio.SocketStream) -> None:
        try:
            if socket_path is not None:
                server: trio.SocketStream = await trio.open_unix_socket(socket_path)
            else:
                server = await trio.open_tcp_stream(host, port)
        except OSError:
            await client.aclose()
            return
        async with trio.open_nursery() as pumps:
            pumps.start_soon(_pump, client, server, proxy.to_server)
            pumps.start_soon(_pump, server, client, proxy.to_client)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        listen_port = listeners[0].socket.getsockname()[1]
        proxy = Proxy(_proxied_url(database_url, listen_port), Gate(), Gate())
        yield proxy
        nursery.cancel_scope.cancel()
