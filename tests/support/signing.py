"""Signing requests the way a client must."""

from __future__ import annotations

import time

from bgchallenge.domain.signing import sign


def signed_headers(
    secret: str, method: str, target: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Bgc-Timestamp": stamp,
        "X-Bgc-Signature": sign(secret, stamp, method, target, body),
    }
