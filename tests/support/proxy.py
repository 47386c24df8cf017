"""A TCP proxy on loopback that can stop answering: what a server behind a stuck load balancer
looks like (connections stay open, bytes sent are acknowledged, nothing comes back)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import trio


class FreezableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.frozen = False
        self.accepted = 0
        # connections past this many are closed as soon as they are accepted
        self.max_connections: int | None = None
        # new connections are accepted and never answered; open ones carry on
        self.hold_new = False
        self._forwarding: set[trio.CancelScope] = set()

    def url_for(self, url: str) -> str:
        """``url`` (a postgresql:// URL) going through this proxy."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def freeze(self) -> None:
        """From now on nothing is forwarded, on open connections or new ones."""
        self.frozen = True

    def drop_open(self) -> None:
        """Close every connection being forwarded now (a server restarting, a failover)."""
        for scope in self._forwarding:
            scope.cancel()

    async def serve(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            self.accepted += 1
            if self.max_connections is not None and self.accepted > self.max_connections:
                return
            if self.frozen or self.hold_new:
                await trio.sleep_forever()
            server = await trio.open_tcp_stream(*self.upstream)
            async with server, trio.open_nursery() as nursery:
                self._forwarding.add(nursery.cancel_scope)
                nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
            self._forwarding.discard(nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, target: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        try:
            async for data in source:
                if self.frozen:
                    await trio.sleep_forever()
                await target.send_all(data)
        except trio.BrokenResourceError:
            pass
        both.cancel()
