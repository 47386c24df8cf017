"""The list query: its parameters, its opaque cursor and its ETag. Pure: no I/O, no clock."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH, FieldProblem
from bgchallenge.domain.paths import storable_text_problem
from bgchallenge.domain.results import Status

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
KNOWN_PARAMETERS = ("jobId", "status", "limit", "cursor")
_CURSOR_TAG_BYTES = 12


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
    def scope(self) -> str:
        """Whose change number tells whether this query's answer changed."""
        return "*" if self.job_id is None else f"job:{self.job_id}"

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


def list_etag(query: ListQuery, change_no: int) -> str:
    """A strong ETag for exactly this query (filters and page) at this change number."""
    identity = f"{query.filters}|{query.limit}|{query.after_id}|{change_no}"
    return '"' + hashlib.sha256(identity.encode()).hexdigest()[:32] + '"'


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
