"""The framework's own ceiling: the same server stack (quart-trio on hypercorn's trio worker,
the same JSON parsing) answering enqueue-shaped and list-shaped requests without a database.

    python -m bench.ceiling PORT
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import trio
from quart import Response, request
from quart_trio import QuartTrio

from bgchallenge.web.schema import decode_enqueue
from bgchallenge.web.server import serve_http

app = QuartTrio("ceiling")


@app.post("/results/enqueue")
async def enqueue() -> Response:
    raw: bytes = await request.get_data(as_text=False)  # type: ignore[assignment]
    parsed = decode_enqueue(raw, now=datetime.now(UTC), callbacks=False)
    body = json.dumps({"id": 1, "jobId": parsed.job_id, "url": parsed.source.public})
    return Response(body, status=202, content_type="application/json")


@app.get("/results/list")
async def list_results() -> Response:
    if request.headers.get("If-None-Match") == '"x"':
        return Response(b"", status=304, headers={"ETag": '"x"'})
    return Response('{"items": []}', content_type="application/json", headers={"ETag": '"x"'})


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_http, app, "127.0.0.1", port, trio.Event())
        print(binds[0], flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
