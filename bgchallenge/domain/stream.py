"""Live result streams: event ids (positions), which change each stream sends, SSE framing.

Pure: no I/O, no clock.

A *batch* is what one read of the changes answers: every result whose writer (migration 0003)
the read's lower bound ``since`` does not see, in its state as of the read's own snapshot
``until``, ordered by (writer, id). Batches of one process follow each other: the next one's
``since`` is the last one's ``until``. Within a batch a result appears once, in its latest state
(the stream's contract lets intermediate states fold into the latest); its changes are all later
than every change of the batches before, so a stream that sends batches in order sends each result's
changes in commit order.

An event id says which changes its client has: a plain position ``B`` means "the state of every
result as of snapshot B"; a position with a cursor ``(B, U, k)`` means "as of B, plus every
result whose writer U sees and whose (writer, id) is at most k". Resuming from an id reads the
results outside that set (sql/queries.sql, changes_since), so:

- No gap: a stream keeps a base snapshot B whose every visible change it has sent (the ``ready``
  position, or the replay's snapshot R). For an event of batch (since, until) with key k: a
  result seen by ``until`` with key <= k is either in the batch at or before k (sent, or skipped
  because B sees its writer: sent before) or not in the batch at all, i.e. seen by ``since``,
  which B sees too (invariant below). The batch's last event names ``until`` alone: every result
  ``until`` sees has then been sent.
- No duplicate: the set an id names is everything sent, not less: the results B sees, plus the
  batch's rows up to k, plus those ``since`` sees, which B sees as well.
- Invariant: B sees everything ``since`` sees. A stream subscribes before it reads its replay R,
  so the first batch it gets starts at the fan-out's position then, which R (taken later) sees;
  after a batch B becomes ``until`` (or stays, if B already sees all of it), the next batch's
  ``since``. A batch that breaks it (never expected) ends the stream; its client resumes.

A replayed batch starts at the client's own id, whose cursor may leave results out that are not
named by the new ids' sets: resuming a *second* time in the middle of that replay may send those
again (never miss one). Positions are also narrowed to a bounded size (domain/listing.py): with
more than 16 transactions running at once, a resume may send a result again. Both only ever err
towards sending twice, never towards missing a change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH, FieldProblem
from bgchallenge.domain.listing import InvalidQuery, Snapshot, decode_position, encode_position
from bgchallenge.domain.paths import storable_text_problem
from bgchallenge.domain.results import Result

KEEP_ALIVE = b": keep-alive\n\n"


def sees(snapshot: Snapshot, xid: int) -> bool:
    """Whether a transaction's effects are visible in ``snapshot`` (committed before it)."""
    return xid < snapshot.xmax and xid not in snapshot.xip


def sees_all(later: Snapshot, earlier: Snapshot) -> bool:
    """Whether ``later`` sees every transaction ``earlier`` sees."""
    running = set(earlier.xip)
    # Each id from later's xmax up to earlier's must be one earlier does not see either.
    if earlier.xmax > later.xmax and sum(x >= later.xmax for x in running) != (
        earlier.xmax - later.xmax
    ):
        return False
    return all(x in running or x >= earlier.xmax for x in later.xip)


@dataclass(frozen=True)
class StreamPosition:
    base: Snapshot
    until: Snapshot | None = None  # with ``cursor``: the batch the cursor is within
    cursor: tuple[int, int] | None = None  # (writer, id) of the last result sent of it


def _purpose(job_id: str | None) -> str:
    return f"stream|{job_id!r}"


def encode_stream_position(key: bytes, job_id: str | None, position: StreamPosition) -> str:
    """An opaque event id, signed and bound to the stream's filter (a cursor leaves out the
    other jobs' results of its batch, so it means nothing for another filter)."""
    base = position.base.narrowed()
    text = encode_position(key, _purpose(job_id), base)
    if position.until is None or position.cursor is None:
        return text
    writer, result_id = position.cursor
    purpose = f"{_purpose(job_id)}|{base.text()}|{writer}|{result_id}"
    return f"{text}.{writer}.{result_id}.{encode_position(key, purpose, position.until)}"


def decode_stream_position(key: bytes, job_id: str | None, text: str) -> StreamPosition | None:
    """The position of an id this service issued for this filter; None for anything else."""
    parts = text.split(".")
    if len(parts) not in (1, 4):
        return None
    base = decode_position(key, _purpose(job_id), parts[0])
    if base is None:
        return None
    if len(parts) == 1:
        return StreamPosition(base)
    if not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts[1:3]):
        return None
    writer, result_id = int(parts[1]), int(parts[2])
    purpose = f"{_purpose(job_id)}|{base.text()}|{writer}|{result_id}"
    until = decode_position(key, purpose, parts[3])
    if until is None:
        return None
    return StreamPosition(base, until, (writer, result_id))


@dataclass(frozen=True)
class Change:
    writer: int
    result: Result

    @property
    def key(self) -> tuple[int, int]:
        return (self.writer, self.result.id)


@dataclass(frozen=True)
class Batch:
    since: Snapshot
    until: Snapshot
    changes: tuple[Change, ...]  # ordered by key
    # Streams with the same filter and base send the same events: each is encoded once.
    encoded: dict[tuple[str | None, StreamPosition], bytes] = field(
        default_factory=dict, compare=False, repr=False
    )


class OutOfOrder(Exception):
    """A batch starts at changes this stream has not sent: it must end (its client resumes)."""


class StreamState:
    """One stream's base position (see the module's docstring) and filter."""

    def __init__(self, job_id: str | None, base: Snapshot) -> None:
        self.job_id = job_id
        self.base = base

    def take(self, batch: Batch) -> list[tuple[StreamPosition, Change]]:
        """The events to send for ``batch``, each with its id's position; advances the base.

        A replay is a batch from the client's own position (its cursor applied by the query),
        taken by a state whose base is that position."""
        if sees_all(self.base, batch.until):
            return []
        if not sees_all(self.base, batch.since):
            raise OutOfOrder
        base = self.base
        pending = [
            change
            for change in batch.changes
            if (self.job_id is None or change.result.job_id == self.job_id)
            and not sees(self.base, change.writer)
        ]
        events = [
            (StreamPosition(base, batch.until, change.key), change) for change in pending[:-1]
        ]
        if pending:
            events.append((StreamPosition(batch.until), pending[-1]))
        self.base = batch.until
        return events


def sse_event(event: str, event_id: str, data: bytes) -> bytes:
    """One Server-Sent Event; ``data`` is one line of JSON (no line break can occur in it)."""
    return f"id: {event_id}\nevent: {event}\ndata: ".encode() + data + b"\n\n"


def parse_stream_query(args: Mapping[str, Sequence[str]]) -> str | None:
    """The stream's job filter (None: every job); raise `InvalidQuery` for anything else."""
    problems = [FieldProblem(f"?{name}", "unknown parameter") for name in args if name != "jobId"]
    values = args.get("jobId", ())
    if len(values) > 1:
        problems.append(FieldProblem("?jobId", "may be given once"))
    job_id = values[0] if values else None
    if job_id is not None and not 1 <= len(job_id) <= MAX_JOB_ID_LENGTH:
        problems.append(FieldProblem("?jobId", f"must be 1 to {MAX_JOB_ID_LENGTH} characters"))
    elif job_id is not None and (unstorable := storable_text_problem(job_id)):
        problems.append(FieldProblem("?jobId", unstorable))
    if problems:
        raise InvalidQuery(problems)
    return job_id
