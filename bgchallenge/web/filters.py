"""The sign-here filter: with a signing secret set, every /results/* request must be signed."""

from __future__ import annotations

import time

from quart import Response, request

from bgchallenge.domain.signing import SignatureRejected, check_freshness, verify
from bgchallenge.web.problems import problem

SIGNED_PREFIX = "/results/"


def request_target() -> str:
    """The request target as sent: raw path, and ``?query`` when the client sent one."""
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    target = raw_path.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def raw_body() -> bytes:
    """The request body exactly as received (Quart raises 413 past MAX_CONTENT_LENGTH)."""
    data = await request.get_data(cache=True, as_text=False)
    return data if isinstance(data, bytes) else data.encode()


async def check_signature(secret: str) -> Response | None:
    """Answer 401 for an unsigned, wrongly signed or stale request; None lets it through.

    The timestamp is checked before the body is read, so an unsigned request is refused
    whatever its body; the HMAC covers the raw body exactly as received.
    """
    if not request.path.startswith(SIGNED_PREFIX):
        return None
    try:
        timestamp = request.headers.get("X-Bgc-Timestamp")
        check_freshness(timestamp, time.time())
        assert timestamp is not None
        signature = request.headers.get("X-Bgc-Signature")
        if not signature:
            raise SignatureRejected("X-Bgc-Signature is missing")
        verify(
            secret,
            timestamp=timestamp,
            signature=signature,
            method=request.method,
            target=request_target(),
            body=await raw_body(),
        )
    except SignatureRejected as exc:
        return problem(
            401, str(exc), kind="unsigned", headers={"WWW-Authenticate": "Bgc-HMAC-SHA256"}
        )
    return None
