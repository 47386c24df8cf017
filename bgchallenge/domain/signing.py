"""Request signing: HMAC-SHA256 over ``"<timestamp>.<method>.<path>.<raw body>"``."""

from __future__ import annotations

import hashlib
import hmac

MAX_AGE_SECONDS = 300
SIGNATURE_PREFIX = "sha256="


class SignatureRejected(ValueError):
    """The request's signature is missing, malformed, wrong or too old."""


def sign(secret: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The ``X-Bgc-Signature`` header value for a request."""
    message = f"{timestamp}.{method.upper()}.{target}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def check_freshness(timestamp: str | None, now: float) -> None:
    """Reject a missing or malformed timestamp, or one more than 5 minutes from ``now``."""
    if not timestamp:
        raise SignatureRejected("X-Bgc-Timestamp is missing")
    try:
        moment = int(timestamp)
    except ValueError as exc:
        raise SignatureRejected("X-Bgc-Timestamp is not a whole number of Unix seconds") from exc
    if abs(now - moment) > MAX_AGE_SECONDS:
        raise SignatureRejected("X-Bgc-Timestamp is more than 5 minutes from the server's clock")


def verify(
    secret: str,
    *,
    timestamp: str,
    signature: str | None,
    method: str,
    target: str,
    body: bytes,
) -> None:
    """Raise `SignatureRejected` unless ``signature`` is right; compared in constant time."""
    if not signature:
        raise SignatureRejected("X-Bgc-Signature is missing")
    expected = sign(secret, timestamp, method, target, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureRejected("X-Bgc-Signature does not match the request")
