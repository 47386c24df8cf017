"""A loopback TCP proxy in front of PostgreSQL that can stop answering: what a server behind a
stuck load balancer looks like (connections stay open, bytes sent are acknowledged, nothing
comes back).

Each direction has a gate. Frozen, a gate holds every byte it has read (nothing reaches the
other side) until thawed; closing drops what it holds. A test freezes the way to the server to
keep a process's next statement from ever running, or the way back to keep a committed
statement's answer from arriving. ``hold_new`` accepts new connections and never answers them;
``max_connections`` closes connections past that many as soon as they are accepted;
``drop_open`` closes the connections being forwarded (a server restarting, a failover).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

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


class PostgresProxy:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = ""  # the database URL through the proxy, once serving
        self.to_server = Gate()
        self.to_client = Gate()
        self.accepted = 0
        self.max_connections: int | None = None
        self.hold_new = False
        self._forwarding: set[trio.CancelScope] = set()

    def freeze(self) -> None:
        """From now on nothing is forwarded, on open connections or new ones."""
        self.to_server.freeze()
        self.to_client.freeze()

    def drop_open(self) -> None:
        for scope in self._forwarding:
            scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.url = _proxied_url(self.database_url, listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            self.accepted += 1
            if self.max_connections is not None and self.accepted > self.max_connections:
                return
            if self.hold_new:
                await trio.sleep_forever()
            host, port, socket_path = _connect_target(self.database_url)
            try:
                if socket_path is not None:
                    server: trio.SocketStream = await trio.open_unix_socket(socket_path)
                else:
                    server = await trio.open_tcp_stream(host, port)
            except OSError:
                return
            async with server, trio.open_nursery() as pumps:
                self._forwarding.add(pumps.cancel_scope)
                pumps.start_soon(_pump, client, server, self.to_server, pumps.cancel_scope)
                pumps.start_soon(_pump, server, client, self.to_client, pumps.cancel_scope)
            self._forwarding.discard(pumps.cancel_scope)


async def _pump(
    source: trio.abc.Stream, sink: trio.abc.Stream, gate: Gate, both: trio.CancelScope
) -> None:
    try:
        async for chunk in source:
            await gate.passage()
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    both.cancel()


@asynccontextmanager
async def postgres_proxy(database_url: str) -> AsyncIterator[PostgresProxy]:
    """Serve a proxy to ``database_url``'s server until the block ends (connections closed)."""
    proxy = PostgresProxy(database_url)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()
