"""Source URLs: parsing, normalisation and the identity that makes two URLs one result.

A result is identified by ``(job_id, host, object_path)``. The object path is the URL's path
normalised as RFC 3986 §6.2.2 says; query and fragment never take part, so two presignings of
one object are one result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f]")


_URL_QUERY = re.compile(r"(?i)(\bhttps?://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")


def redact_queries(text: str) -> str:
    """``text`` with the query string and fragment of every http(s) URL in it removed: a
    presigned query is a credential, and error messages and logs may quote URLs."""
    return _URL_QUERY.sub(r"\1", text)


def storable_text_problem(text: str) -> str | None:
    """Why PostgreSQL could not store ``text`` (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


class InvalidUrl(ValueError):
    """The text is not an absolute http(s) URL this service can fetch."""


@dataclass(frozen=True)
class SourceUrl:
    """A validated source URL split into what is stored, shown and compared."""

    full: str  # as given, query included: a credential, never shown or logged
    scheme: str
    host: str  # lower-case, with ``:port`` when the port is not the scheme's default
    object_path: str

    @property
    def public(self) -> str:
        """The URL without its query string and fragment: safe to show and log."""
        return f"{self.scheme}://{self.host}{self.object_path}"


def _normalise_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on a path that starts with ``/``."""
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def normalise_path(path: str) -> str:
    """Percent-escapes upper-cased, unreserved characters decoded, dot segments removed.

    An empty path is ``/`` (RFC 3986 §6.2.3: for http(s) the two are equivalent).
    """
    path = _PERCENT_ESCAPE.sub(_normalise_escape, path)
    if not path.startswith("/"):
        path = "/" + path
    return remove_dot_segments(path)


def parse_source_url(text: str) -> SourceUrl:
    """Validate ``text`` as an absolute http(s) URL; raise `InvalidUrl` saying why not."""
    if len(text) > MAX_URL_LENGTH:
        raise InvalidUrl(f"must be at most {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_CHARS.search(text):
        raise InvalidUrl("must not contain spaces or control characters")
    unstorable = storable_text_problem(text)
    if unstorable:
        raise InvalidUrl(unstorable)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl("must be an absolute http or https URL")
    if not parts.hostname:
        raise InvalidUrl("must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("must not carry user credentials before the host")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl("has an invalid port") from exc
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return SourceUrl(full=text, scheme=scheme, host=host, object_path=normalise_path(parts.path))
