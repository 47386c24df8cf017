"""A real webhook receiver on loopback: records every POST and answers from a script."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tests.support.origin import Scope, Send, answer_lifespan


@dataclass
class Delivered:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``answers[path]``: the statuses of the next requests to ``path``, then 200; a status
    of 0 never answers."""

    host: str = "127.0.0.1"
    port: int = 0
    base_url: str = ""
    answers: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    received: list[Delivered] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    def at(self, path: str) -> list[Delivered]:
        return [d for d in self.received if d.path == path]

    async def wait_for(self, path: str, count: int) -> list[Delivered]:
        while len(self.at(path)) < count:
            await self._changed.wait()
        return self.at(path)

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.received.append(Delivered(path, headers, body))
        self._changed.set()
        self._changed = trio.Event()
        script = self.answers[path]
        status = script.pop(0) if script else 200
        if status == 0:
            await trio.sleep_forever()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def serve_receiver(
    receiver: Receiver, *, task_status: trio.TaskStatus[Receiver] = trio.TASK_STATUS_IGNORED
) -> None:
    config = Config()
    config.bind = [f"{receiver.host}:{receiver.port}"]
    config.accesslog = None
    config.errorlog = None

    class _Status:
        def started(self, binds: list[str]) -> None:
            receiver.base_url = binds[0]
            task_status.started(receiver)

    await serve(receiver, config, task_status=_Status())  # type: ignore[arg-type]
