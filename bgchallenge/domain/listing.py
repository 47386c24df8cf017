"""The list query: its parameters, its opaque cursor and its ETag. Pure: no I/O, no clock."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH, FieldProblem
from bgchallenge.domain.paths import storable_text_problem
from bgchallenge.domain.results import Status

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
KNOWN_PARAMETERS = ("jobId", "status", "limit", "cursor")
_CURSOR_TAG_BYTES = 12
# A cursor is base64url without padding of 8 + 12 bytes: exactly 27 of these characters.
CURSOR_LENGTH = 27
_CURSOR = re.compile(f"[A-Za-z0-9_-]{{{CURSOR_LENGTH}}}")


class InvalidQuery(ValueError):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.pointer}: {p.detail}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class ListQuery:
    job_id: str | None
    statuses: tuple[str, ...] | None  # sorted, without repeats; None: every status
    limit: int
    after_id: int  # 0: from the start

    @property
    def filters(self) -> str:
        """What a cursor is bound to: the same filters, whatever the limit."""
        return f"{self.job_id!r}|{','.join(self.statuses or ())}"


def parse_list_query(args: Mapping[str, Sequence[str]], cursor_key: bytes) -> ListQuery:
    """Validate the query string (each name with all its values); raise `InvalidQuery`."""
    problems = [
        FieldProblem(f"?{name}", "unknown parameter")
        for name in args
        if name not in KNOWN_PARAMETERS
    ]
    for name in ("jobId", "limit", "cursor"):
        if len(args.get(name, ())) > 1:
            problems.append(FieldProblem(f"?{name}", "may be given once"))
    job_id = _single(args, "jobId")
    if job_id is not None and not 1 <= len(job_id) <= MAX_JOB_ID_LENGTH:
        problems.append(FieldProblem("?jobId", f"must be 1 to {MAX_JOB_ID_LENGTH} characters"))
    elif job_id is not None and (unstorable := storable_text_problem(job_id)):
        problems.append(FieldProblem("?jobId", unstorable))

    statuses: tuple[str, ...] | None = None
    if args.get("status"):
        unknown = [s for s in args["status"] if s not in {status.value for status in Status}]
        for value in unknown:
            problems.append(FieldProblem("?status", f"unknown status {value!r}"))
        statuses = tuple(sorted(set(args["status"])))

    limit = DEFAULT_LIMIT
    raw_limit = _single(args, "limit")
    if raw_limit is not None:
        if (
            not (raw_limit.isascii() and raw_limit.isdigit())
            or not 1 <= int(raw_limit) <= MAX_LIMIT
        ):
            problems.append(FieldProblem("?limit", f"must be a whole number from 1 to {MAX_LIMIT}"))
        else:
            limit = int(raw_limit)

    query = ListQuery(job_id=job_id, statuses=statuses, limit=limit, after_id=0)
    raw_cursor = _single(args, "cursor")
    if raw_cursor is not None and not problems:
        after_id = decode_cursor(cursor_key, query, raw_cursor)
        if after_id is None:
            problems.append(
                FieldProblem("?cursor", "not a cursor this service issued for these filters")
            )
        else:
            query = ListQuery(job_id, statuses, limit, after_id)
    if problems:
        raise InvalidQuery(problems)
    return query


def _single(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = args.get(name)
    return values[0] if values else None


def _cursor_tag(key: bytes, filters: str, after_id: int) -> bytes:
    message = f"{after_id}|{filters}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_CURSOR_TAG_BYTES]


def encode_cursor(key: bytes, query: ListQuery, after_id: int) -> str:
    """An opaque cursor: the last id seen, signed together with the query's filters."""
    raw = after_id.to_bytes(8, "big") + _cursor_tag(key, query.filters, after_id)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(key: bytes, query: ListQuery, text: str) -> int | None:
    """The id a cursor continues after, or None if this service did not issue it."""
    if not _CURSOR.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 8 + _CURSOR_TAG_BYTES:
        return None
    after_id = int.from_bytes(raw[:8], "big")
    if not hmac.compare_digest(raw[8:], _cursor_tag(key, query.filters, after_id)):
        return None
    return after_id


# ---- Snapshots: what ETags (and change streams) are built from ----------------------------
#
# A position in the commit order of changes is a PostgreSQL snapshot (``pg_snapshot``): a
# transaction id below ``xmin`` is visible in it, from ``xmax`` on it is not, and in between all
# but those listed in ``xip`` (running when it was taken). Every result row records the
# top-level transaction that last changed what a client sees of it (``writer``, migration
# 0003), so "what changed after position P" is exactly "the rows whose writer is not visible in
# P", whatever order the transactions started and committed in. An ETag is such a position
# signed together with the query it answered; a change stream can resume from one the same way.
#
# A position travels as base64url of: a format byte (1), ``xmin`` (8 bytes, big-endian), then
# unsigned LEB128 varints: ``xmax - xmin``, the number of ``xip`` entries, and each entry as its
# distance from the one before (the first from ``xmin``); then an HMAC-SHA256 tag (12 bytes) of
# the purpose (the query, for an ETag) and those bytes, under the cursor key. The tag keeps
# clients from forging one (a forged old ``xmax`` would make the 304 check read the whole
# index) and from moving one to another query.

_POSITION_FORMAT = 1
# Bounds the length of an ETag: past this many running transactions, see `Snapshot.narrowed`.
MAX_RUNNING = 16
_POSITION_TAG_BYTES = 12


@dataclass(frozen=True)
class Snapshot:
    xmin: int
    xmax: int
    xip: tuple[int, ...]  # ascending, each in [xmin, xmax)

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """PostgreSQL's text form ``xmin:xmax:xip,xip,...``."""
        xmin, xmax, running = text.split(":")
        xip = tuple(sorted({int(x) for x in running.split(",") if x}))
        snapshot = cls(int(xmin), int(xmax), xip)
        if not snapshot.valid():
            raise ValueError(f"not a snapshot: {text!r}")
        return snapshot

    def valid(self) -> bool:
        return (
            0 <= self.xmin <= self.xmax < 2**64
            and all(self.xmin <= x < self.xmax for x in self.xip)
            and list(self.xip) == sorted(set(self.xip))
        )

    def text(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    def narrowed(self, max_running: int = MAX_RUNNING) -> Snapshot:
        """A snapshot that sees no more than this one, with at most ``max_running`` entries.

        Cut at the first dropped entry: below it, the two see the same transactions; from it on,
        the narrowed one sees none. Seeing less can only turn a 304 into a 200, never the
        reverse, so a narrowed position is still never stale."""
        if len(self.xip) <= max_running:
            return self
        return Snapshot(self.xmin, self.xip[max_running], self.xip[:max_running])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varints(raw: bytes) -> list[int] | None:
    values, value, shift = [], 0, 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            return None
        if not byte & 0x80:
            values.append(value)
            value, shift = 0, 0
    return values if shift == 0 else None


def _position_tag(key: bytes, purpose: str, body: bytes) -> bytes:
    message = purpose.encode() + b"\0" + body
    return hmac.new(key, message, hashlib.sha256).digest()[:_POSITION_TAG_BYTES]


def encode_position(key: bytes, purpose: str, snapshot: Snapshot) -> str:
    """A signed, opaque position for ``purpose``; the snapshot is narrowed to a bounded size."""
    snapshot = snapshot.narrowed()
    body = bytearray([_POSITION_FORMAT])
    body += snapshot.xmin.to_bytes(8, "big")
    body += _varint(snapshot.xmax - snapshot.xmin) + _varint(len(snapshot.xip))
    previous = snapshot.xmin
    for xid in snapshot.xip:
        body += _varint(xid - previous)
        previous = xid
    raw = bytes(body) + _position_tag(key, purpose, bytes(body))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(key: bytes, purpose: str, text: str) -> Snapshot | None:
    """The snapshot of a position this service issued for ``purpose``; None for anything else."""
    if len(text) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    body, tag = raw[:-_POSITION_TAG_BYTES], raw[-_POSITION_TAG_BYTES:]
    if len(body) < 9 or body[0] != _POSITION_FORMAT:
        return None
    if not hmac.compare_digest(tag, _position_tag(key, purpose, body)):
        return None
    xmin = int.from_bytes(body[1:9], "big")
    numbers = _read_varints(body[9:])
    if numbers is None or len(numbers) < 2 or len(numbers) != 2 + numbers[1]:
        return None
    xip, previous = [], xmin
    for distance in numbers[2:]:
        previous += distance
        xip.append(previous)
    snapshot = Snapshot(xmin, xmin + numbers[0], tuple(xip))
    return snapshot if snapshot.valid() else None


def _etag_purpose(query: ListQuery) -> str:
    return f"etag|{query.filters}|{query.limit}|{query.after_id}"


def list_etag(key: bytes, query: ListQuery, snapshot: Snapshot) -> str:
    """A strong ETag for exactly this query (filters and page) as read in ``snapshot``."""
    return '"' + encode_position(key, _etag_purpose(query), snapshot) + '"'


def etag_snapshots(key: bytes, query: ListQuery, header: str) -> list[tuple[str, Snapshot]]:
    """The ETags of an If-None-Match list that this service issued for this very query, each
    (as a strong tag) with the snapshot it was read in; weak tags compare equal (RFC 9110)."""
    found = []
    for tag in _split_tags(header):
        opaque = _opaque(tag)
        if len(opaque) >= 2 and opaque[0] == opaque[-1] == '"':
            snapshot = decode_position(key, _etag_purpose(query), opaque[1:-1])
            if snapshot is not None:
                found.append((opaque, snapshot))
    return found


def if_none_match_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: ``*``, or any listed tag equal to ours by weak comparison."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(_opaque(tag) == _opaque(etag) for tag in _split_tags(header))


def _split_tags(header: str) -> Iterable[str]:
    return (part.strip() for part in header.split(",") if part.strip())


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag
