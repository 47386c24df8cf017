"""Request signing: HMAC-SHA256 over four fields joined by line feeds.

The canonical string is ``"<timestamp>\\n<METHOD>\\n<target>\\n<hex SHA-256 of the raw body>"``.
No field can hold a line feed and the body's digest has a fixed length, so no two requests
share a canonical string (an earlier format joined raw fields with ``.``: the query of one
request could be re-read as another's body).
"""

from __future__ import annotations

import hashlib
import hmac
import re

MAX_AGE_SECONDS = 300
SIGNATURE_PREFIX = "sha256="
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


class SignatureRejected(ValueError):
    """The request's signature is missing, malformed, wrong or too old."""


def body_digest(body: bytes) -> str:
    """The hex SHA-256 of a raw body, as the canonical string carries it."""
    return hashlib.sha256(body).hexdigest()


def canonical_string(timestamp: str, method: str, target: str, digest: str) -> bytes:
    """What is signed; raises `ValueError` for a field holding a line feed."""
    fields = (timestamp, method.upper(), target, digest)
    if any("\n" in field for field in fields):
        raise ValueError("a signed field cannot contain a line feed")
    return "\n".join(fields).encode("utf-8")


def sign_digest(secret: str, timestamp: str, method: str, target: str, digest: str) -> str:
    """The ``X-Bgc-Signature`` header value, given the hex SHA-256 of the body."""
    message = canonical_string(timestamp, method, target, digest)
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The ``X-Bgc-Signature`` header value for a request."""
    return sign_digest(secret, timestamp, method, target, body_digest(body))


def check_freshness(timestamp: str | None, now: float) -> None:
    """Reject a missing or malformed timestamp, or one more than 5 minutes from ``now``."""
    if not timestamp:
        raise SignatureRejected("X-Bgc-Timestamp is missing")
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureRejected("X-Bgc-Timestamp is not a whole number of Unix seconds")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise SignatureRejected("X-Bgc-Timestamp is more than 5 minutes from the server's clock")


def verify(
    secret: str,
    *,
    timestamp: str,
    signature: str | None,
    method: str,
    target: str,
    digest: str,
) -> None:
    """Raise `SignatureRejected` unless ``signature`` is right; compared in constant time.

    ``digest`` is the hex SHA-256 of the body as received (see `body_digest`).
    """
    if not signature:
        raise SignatureRejected("X-Bgc-Signature is missing")
    try:
        expected = sign_digest(secret, timestamp, method, target, digest)
    except ValueError:
        raise SignatureRejected("X-Bgc-Signature does not match the request") from None
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureRejected("X-Bgc-Signature does not match the request")
