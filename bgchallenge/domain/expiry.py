"""When a presigned URL stops working, read from its query string: pure, no clock.

AWS SigV4 (``X-Amz-Date`` + ``X-Amz-Expires``), AWS SigV2 and CloudFront (``Expires``, unix
seconds), Google (``X-Goog-Date`` + ``X-Goog-Expires``), Azure SAS (``se``). Names are matched
case-insensitively; a malformed value means no expiry, never an error: the URL may still work,
and the origin has the last word.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

# Far beyond any real signature; keeps the arithmetic inside datetime's range.
_MAX_SECONDS = 100 * 366 * 24 * 3600
_DIGITS = re.compile(r"[0-9]{1,12}")
_BASIC_TIME = re.compile(r"([0-9]{8})T([0-9]{6})Z")
# ISO 8601 as Azure writes `se`: date, optionally a time with or without seconds (and a
# fraction), in UTC (``Z``, or no zone at all, which Azure reads as UTC).
_AZURE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?)?Z?"
)


def url_expiry(url: str) -> datetime | None:
    """The instant the presigned ``url`` expires (UTC), or None when it names none."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        # the first occurrence of a name counts, whatever its case
        params.setdefault(name.lower(), value)
    if "x-amz-date" in params or "x-amz-expires" in params:
        return _dated(params.get("x-amz-date"), params.get("x-amz-expires"))
    if "x-goog-date" in params or "x-goog-expires" in params:
        return _dated(params.get("x-goog-date"), params.get("x-goog-expires"))
    if "expires" in params:
        return _unix(params["expires"])
    if "se" in params:
        return _azure(params["se"])
    return None


def _seconds(text: str | None) -> int | None:
    if text is None or not _DIGITS.fullmatch(text):
        return None
    seconds = int(text)
    return seconds if seconds <= _MAX_SECONDS else None


def _dated(date: str | None, expires: str | None) -> datetime | None:
    """``YYYYMMDDTHHMMSSZ`` plus a number of seconds (AWS SigV4 and Google V4)."""
    seconds = _seconds(expires)
    match = _BASIC_TIME.fullmatch(date or "")
    if seconds is None or match is None:
        return None
    try:
        signed = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return signed.replace(tzinfo=UTC) + timedelta(seconds=seconds)


def _unix(text: str) -> datetime | None:
    seconds = _seconds(text)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _azure(text: str) -> datetime | None:
    match = _AZURE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a URL expiring at ``expires_at`` no longer works at ``now`` (at the instant
    itself it does not)."""
    return expires_at is not None and now >= expires_at
