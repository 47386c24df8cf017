"""What every request passes before its route: its body is read, then the sign-here filter
(with a signing secret set, every /results/* request must be signed), then the body's limits."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import trio
from quart import Response, current_app, g, request
from werkzeug.exceptions import RequestTimeout

from bgchallenge.domain.signing import SignatureRejected, check_freshness, verify
from bgchallenge.web.problems import problem

SIGNED_PREFIX = "/results/"
BODYLESS_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class ReceivedBody:
    """A request body, read before anything looks at it."""

    data: bytes  # the whole body, or b"" when it is larger than the limit
    size: int
    digest: str  # hex SHA-256 of the whole body
    too_large: bool


def request_target() -> str:
    """The request target as sent: raw path, and ``?query`` when the client sent one."""
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    target = raw_path.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def receive_body(max_bytes: int) -> ReceivedBody:
    """Read the whole body, keeping it when at most ``max_bytes``; hash all of it.

    Reading to the end comes first, whatever the answer will be: with hypercorn and
    quart-trio, an answer sent before the body has been read leaves a kept-alive connection
    hung (the unread body fills the application's queue). A body over ``max_bytes`` is read
    on and discarded, hashed so that its signature can still be checked: an unsigned request
    gets 401, not 413. Quart's body timeout bounds the whole read.
    """
    hasher = hashlib.sha256()
    kept = bytearray()
    size = 0
    timeout = current_app.config["BODY_TIMEOUT"]
    with trio.move_on_after(float("inf") if timeout is None else timeout) as deadline:
        async for chunk in request.body:
            size += len(chunk)
            hasher.update(chunk)
            if size <= max_bytes:
                kept += chunk
    if deadline.cancelled_caught:
        raise RequestTimeout()
    too_large = size > max_bytes
    body = ReceivedBody(b"" if too_large else bytes(kept), size, hasher.hexdigest(), too_large)
    g.bgc_body = body
    return body


def raw_body() -> bytes:
    """The body exactly as received (`receive_body` has read it and found it within limits)."""
    body: ReceivedBody = g.bgc_body
    assert not body.too_large
    return body.data


def check_signature(secret: str, body: ReceivedBody) -> Response | None:
    """Answer 401 for an unsigned, wrongly signed or stale request; None lets it through.

    The headers are checked first, and the HMAC covers the digest of the raw body as
    received, so an unsigned request is refused whatever its body, even a too large one.
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
            digest=body.digest,
        )
    except SignatureRejected as exc:
        return problem(
            401, str(exc), kind="unsigned", headers={"WWW-Authenticate": "Bgc-HMAC-SHA256"}
        )
    return None


def check_body(body: ReceivedBody, max_bytes: int) -> Response | None:
    """Answer 413 for a body over ``max_bytes``, 400 for a body on GET or HEAD.

    A path or method the service does not serve stays a 404 or 405 whatever the body.
    """
    if body.too_large:
        return problem(413, f"the body is larger than {max_bytes} bytes")
    if body.size and request.method in BODYLESS_METHODS and request.routing_exception is None:
        return problem(
            400, f"a {request.method} request must not have a body", kind="body-not-allowed"
        )
    return None
