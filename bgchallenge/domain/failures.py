"""Why an attempt failed, and whether trying again can help.

Failure(code, message, transient)
├── permanent: not_found, forbidden, not_an_image, too_large, blocked_address,
│              bad_redirect, bad_status, url_expired
└── transient: origin_unavailable, storage_unavailable, database_unavailable
exhausted: the last transient failure, after the final attempt
"""

from __future__ import annotations

from datetime import datetime

from bgchallenge.domain.paths import redact_queries

PERMANENT_CODES = frozenset(
    {
        "not_found",
        "forbidden",
        "not_an_image",
        "too_large",
        "blocked_address",
        "bad_redirect",
        "bad_status",
        "url_expired",
    }
)
TRANSIENT_CODES = frozenset({"origin_unavailable", "storage_unavailable", "database_unavailable"})
EXHAUSTED = "exhausted"


class Failure(Exception):
    """An attempt's failure: ``code`` from the API's list, and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        # Stored and shown to clients: a message quoting a presigned URL must not carry its query.
        message = redact_queries(message)
        super().__init__(code, message)
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def url_expired(expires_at: datetime) -> Failure:
    shown = expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Failure("url_expired", f"the presigned URL expired at {shown}")


def failure_for_status(
    status: int, method: str, expired_at: datetime | None = None
) -> Failure | None:
    """The failure an origin's status code means, or None for 200. ``expired_at``: the URL's
    expiry when it has passed by the time of the answer (a refusal then means that)."""
    if status == 200:
        return None
    if status in (404, 410):
        return Failure("not_found", f"the origin answered {status} to {method}")
    if status in (401, 403) and expired_at is not None:
        failure = url_expired(expired_at)
        return Failure(failure.code, f"{failure.message}: the origin answered {status} to {method}")
    if status in (401, 403):
        return Failure("forbidden", f"the origin answered {status} to {method}")
    if status == 429 or status >= 500:
        return Failure("origin_unavailable", f"the origin answered {status} to {method}")
    return Failure("bad_status", f"the origin answered {status} to {method}, not 200")


def check_image_headers(
    content_type: str | None, content_length: str | None, max_bytes: int
) -> Failure | None:
    """``Content-Type`` must be ``image/*``; ``Content-Length``, when present, within the limit."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not media_type.startswith("image/") or media_type == "image/":
        return Failure("not_an_image", f"Content-Type is {content_type or 'missing'}, not image/*")
    if content_length is not None:
        try:
            length = int(content_length)
        except ValueError:
            return None  # a garbled length is ignored: the limit is enforced on the bytes
        if length > max_bytes:
            return Failure(
                "too_large", f"Content-Length {length} is over the limit of {max_bytes} bytes"
            )
    return None


def check_content_encoding(content_encoding: str | None) -> Failure | None:
    """Only the identity encoding is accepted: the size limit must count the bytes stored.

    The fetcher asks for ``Accept-Encoding: identity``; an origin that compresses anyway sends
    bytes that are not an image as they stand (and may inflate to far past the limit).
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    if all(coding in ("", "identity") for coding in codings):
        return None
    shown = (content_encoding or "").strip()
    return Failure("not_an_image", f"the body is compressed (Content-Encoding: {shown})")


def too_slow(min_bytes: int, window: float) -> Failure:
    return Failure(
        "origin_unavailable", f"too slow: fewer than {min_bytes} bytes in {window:g} s of waiting"
    )


def too_large(received: int, max_bytes: int) -> Failure:
    return Failure("too_large", f"more than {max_bytes} bytes received ({received} so far)")


def not_an_image(prefix: bytes, declared: str) -> Failure:
    """The first bytes show no accepted image type, whatever the origin declared."""
    shown = f"starts {prefix[:16].hex(' ')}" if prefix else "is empty"
    return Failure(
        "not_an_image",
        f"the bytes are not an image the service accepts (declared {declared}; the body {shown})",
    )
