"""The results repository: one Trio method per named query, rows mapped to domain objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from bgchallenge.db.database import Database, Row
from bgchallenge.domain.callbacks import Delivery
from bgchallenge.domain.enqueue import EnqueueRequest
from bgchallenge.domain.listing import ListQuery, Snapshot
from bgchallenge.domain.messages import ClaimAnswer, Message
from bgchallenge.domain.results import Claim, Progress, Result, Status, StoredObject
from bgchallenge.domain.stream import Batch, Change, StreamPosition

# A concurrent insert of the same identity can commit between the statement's snapshot and
# its insert; the statement then sees neither row. Running it again always sees one.
_ENQUEUE_ATTEMPTS = 5


@dataclass(frozen=True)
class Enqueued:
    result: Result
    created: bool  # False: the identity existed already, ``result`` is the existing row


Identity = tuple[str, str, str]
# Told, right after the commit, of the message intents a statement wrote to the outbox.
OutboxSink = Callable[[Sequence[Message]], None]


def _written_messages(rows: Sequence[Row]) -> list[Message]:
    """The outbox rows a statement wrote (``outbox_id``, ``outbox_not_before``), from its rows."""
    return [
        Message(int(row["outbox_id"]), int(row["id"]), row["outbox_not_before"])
        for row in rows
        if row.get("outbox_id") is not None
    ]


def _identity(request: EnqueueRequest) -> Identity:
    return (request.job_id, request.source.host, request.source.object_path)


def _identity_of_row(row: Row) -> Identity:
    return (row["job_id"], row["host"], row["object_path"])


def _batch_params(pending: Sequence[tuple[int, EnqueueRequest]]) -> dict[str, Any]:
    requests = [request for _, request in pending]
    return {
        "job_ids": [r.job_id for r in requests],
        "hosts": [r.source.host for r in requests],
        "object_paths": [r.source.object_path for r in requests],
        "urls": [r.source.public for r in requests],
        "source_urls": [r.source.full for r in requests],
        "url_expires_at": [r.url_expires_at for r in requests],
        "callback_urls": [r.callback.public if r.callback else None for r in requests],
        "callback_targets": [r.callback.full if r.callback else None for r in requests],
    }


@dataclass(frozen=True)
class Page:
    snapshot: Snapshot  # the one the page was read in
    results: list[Result]
    more: bool


@dataclass(frozen=True)
class Canceled:
    result: Result
    requested: bool  # True: it was running; the worker holding it is told to stop


class Results:
    """The client side of the results table. With an ``outbox`` (a broker transport), the
    enqueue writes each new result's message intent in its commit and tells ``outbox`` of
    them right after it."""

    def __init__(self, database: Database, outbox: OutboxSink | None = None) -> None:
        self.database = database
        self.outbox = outbox

    async def ping(self) -> None:
        await self.database.fetch_one("ping")

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Enqueued]:
        """Store many requests in one statement; answer each in order (created, or the existing
        result of the same identity — including an earlier request of the same batch)."""
        answers: dict[int, Enqueued] = {}
        pending = list(enumerate(requests))
        for _ in range(_ENQUEUE_ATTEMPTS):
            rows = await self.database.fetch_all(
                "enqueue_results", {**_batch_params(pending), "outbox": self.outbox is not None}
            )
            if self.outbox is not None:
                self.outbox(_written_messages(rows))
            created = {_identity_of_row(r): r for r in rows if r["inserted"]}
            existing = {_identity_of_row(r): r for r in rows if not r["inserted"]}
            retry = []
            for position, request in pending:
                identity = _identity(request)
                if identity in created:
                    # the first request of an identity gets the new row, repeats a 409
                    row = created.pop(identity)
                    answers[position] = Enqueued(Result.from_row(row), True)
                    existing[identity] = row
                elif identity in existing:
                    answers[position] = Enqueued(Result.from_row(existing[identity]), False)
                else:
                    retry.append((position, request))
            if not retry:
                return [answers[position] for position in range(len(requests))]
            pending = retry
        raise RuntimeError("enqueue saw neither a new nor an existing row; this is a bug")

    async def queue_depth(self) -> dict[str, int]:
        row = await self.database.fetch_one("queue_depth")
        assert row is not None
        return {name: int(row[name]) for name in ("queued", "due", "running")}

    async def cursor_key(self) -> bytes:
        row = await self.database.fetch_one("cursor_key")
        assert row is not None, "migration 0002 stores the cursor key"
        return str(row["key"]).encode()

    async def unchanged_since(self, checks: Sequence[tuple[str | None, Snapshot]]) -> list[bool]:
        """For each (job id, or None for every job; snapshot), in order: whether no result in
        that scope was inserted or changed since the snapshot. One statement for all."""
        rows = await self.database.fetch_all(
            "unchanged_since",
            {
                "job_ids": [job_id for job_id, _ in checks],
                "snapshots": [snapshot.text() for _, snapshot in checks],
            },
        )
        answers = {int(row["position"]): bool(row["unchanged"]) for row in rows}
        return [answers[position] for position in range(1, len(checks) + 1)]

    async def list_page(self, query: ListQuery) -> Page:
        """One more row than the limit is read, to know whether another page follows."""
        rows = await self.database.fetch_all(
            "list_results",
            {
                "after_id": query.after_id,
                "job_id": query.job_id,
                "statuses": list(query.statuses) if query.statuses else None,
                "limit": query.limit + 1,
            },
        )
        results = [Result.from_row(row) for row in rows if row["id"] is not None]
        return Page(
            snapshot=Snapshot.parse(rows[0]["snapshot"]),
            results=results[: query.limit],
            more=len(results) > query.limit,
        )

    async def cancel(self, result_id: int) -> Canceled | None:
        """Cancel a result; None if there is no such result. See `Canceled`."""
        row = await self.database.fetch_one("cancel", {"id": result_id})
        if row is None:
            return None
        return Canceled(Result.from_row(row), requested=row["was"] == Status.RUNNING.value)

    async def get(self, result_id: int) -> Result | None:
        row = await self.database.fetch_one("get_result", {"id": result_id})
        return Result.from_row(row) if row else None

    async def current_snapshot(self) -> Snapshot:
        row = await self.database.fetch_one("current_snapshot")
        assert row is not None
        return Snapshot.parse(row["snapshot"])

    async def changes_since(self, job_id: str | None, position: StreamPosition) -> Batch:
        """The results (of one job, or all) changed after ``position``, as of one snapshot."""
        rows = await self.database.fetch_all(
            "changes_since",
            {
                "job_id": job_id,
                "since": position.base.text(),
                "since_xip": [str(xid) for xid in position.base.xip],
                "sent": position.until.text() if position.until else None,
                "sent_writer": str(position.cursor[0]) if position.cursor else None,
                "sent_id": position.cursor[1] if position.cursor else None,
            },
        )
        changes = tuple(
            Change(int(row["writer"]), Result.from_row(row))
            for row in rows
            if row["id"] is not None
        )
        return Batch(position.base, Snapshot.parse(rows[0]["snapshot"]), changes)


class Attempts:
    """The worker side of the results table: claiming, leases and outcomes.

    Every outcome is fenced on (owner, attempt number, status running): an attempt whose lease
    was taken over can never overwrite the attempt that took it over. Each outcome method
    answers the status it recorded (a result a cancel was requested for ends `canceled`
    whatever the attempt's outcome), or None when it changed nothing (the attempt is no longer
    this worker's).

    With an ``outbox`` (a broker transport), every statement that queues a result again
    (`schedule_retry`, `hand_back`, `reap_expired_leases`) writes its message intent, due when
    the result is, in the same commit, and tells ``outbox`` of it right after.

    ``in_threads``: the claims, lease renewals and outcomes go through psycopg's blocking API in
    worker threads (`Database.fetch_all_in_thread`) instead of trio-asyncio. For a process that
    serves no API: there they answer in half the time under load, but beside the API's own
    statements (role ``all``) they slowed those past their pool wait (docs/benchmarks.md, "The
    worker's cost per result, second round").
    """

    def __init__(
        self,
        database: Database,
        owner: str,
        lease_seconds: float,
        outbox: OutboxSink | None = None,
        observe: Callable[[str, float], None] | None = None,
        *,
        in_threads: bool = False,
    ) -> None:
        self.database = database
        self._fetch_all = database.fetch_all_in_thread if in_threads else database.fetch_all
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.outbox = outbox
        self.observe = observe  # (operation, seconds) of every claim, outcome, lease call

    def _told(self, rows: Sequence[Row]) -> None:
        if self.outbox is not None:
            messages = _written_messages(rows)
            if messages:
                self.outbox(messages)

    async def _statement(self, operation: str, name: str, params: dict[str, Any]) -> list[Row]:
        """One of the worker's own statements (a claim, a lease renewal, an outcome), timed for
        ``observe``."""
        started = trio.current_time()
        rows = await self._fetch_all(name, params)
        if self.observe is not None:
            self.observe(operation, trio.current_time() - started)
        return rows

    def _fence(self, claim: Claim) -> dict[str, Any]:
        return {"id": claim.id, "owner": self.owner, "attempts": claim.attempts}

    @staticmethod
    def _progress(progress: Progress | None) -> dict[str, Any]:
        """None leaves the stored progress as it is (this attempt has received no byte)."""
        if progress is None:
            return {"received": None, "total": None}
        return {"received": progress.received_bytes, "total": progress.total_bytes}

    async def _outcome(self, name: str, params: dict[str, Any]) -> Status | None:
        rows = await self._statement("outcome", name, {**params, "outbox": self.outbox is not None})
        if not rows:
            return None
        self._told([{**rows[0], "id": params["id"]}])
        return Status(rows[0]["status"])

    async def claim_due(self, limit: int) -> list[Claim]:
        rows = await self._statement(
            "claim",
            "claim_due",
            {"limit": limit, "owner": self.owner, "lease_seconds": self.lease_seconds},
        )
        return [Claim.from_row(row) for row in rows]

    async def claim_results(self, result_ids: Sequence[int]) -> list[ClaimAnswer]:
        """A broker transport's claim: each of ``result_ids`` (the results its messages name,
        without repeats) claimed by id if due, with the same update as `claim_due`; answers one
        `ClaimAnswer` per id (a result that does not exist is dropped)."""
        rows = await self._statement(
            "claim",
            "claim_results",
            {"ids": list(result_ids), "owner": self.owner, "lease_seconds": self.lease_seconds},
        )
        return [ClaimAnswer.from_row(row) for row in rows]

    async def seconds_until_next_due(self) -> float | None:
        row = await self.database.fetch_one("seconds_until_next_due")
        return None if row is None else row["seconds"]

    async def extend_lease(self, claim: Claim, progress: Progress | None = None) -> bool | None:
        """None: the lease is lost; otherwise whether a cancel was requested. Stores
        ``progress`` in the same write when given."""
        rows = await self._statement(
            "lease",
            "extend_lease",
            {**self._fence(claim), **self._progress(progress), "lease_seconds": self.lease_seconds},
        )
        return bool(rows[0]["cancel_requested"]) if rows else None

    async def record_success(
        self, claim: Claim, stored: StoredObject, progress: Progress | None = None
    ) -> Status | None:
        params = {
            **self._fence(claim),
            **self._progress(progress),
            "bucket": stored.bucket,
            "key": stored.key,
            "size": stored.size,
            "content_type": stored.content_type,
            "sha256": stored.sha256,
            "declared_content_type": stored.declared_content_type,
        }
        return await self._outcome("record_success", params)

    async def record_failure(
        self, claim: Claim, code: str, message: str, progress: Progress | None = None
    ) -> Status | None:
        params = {
            **self._fence(claim),
            **self._progress(progress),
            "code": code,
            "message": message,
        }
        return await self._outcome("record_failure", params)

    async def schedule_retry(
        self,
        claim: Claim,
        code: str,
        message: str,
        delay_seconds: float,
        progress: Progress | None = None,
    ) -> Status | None:
        params = {
            **self._fence(claim),
            **self._progress(progress),
            "code": code,
            "message": message,
            "delay_seconds": delay_seconds,
        }
        return await self._outcome("schedule_retry", params)

    async def record_canceled(
        self, claim: Claim, progress: Progress | None = None
    ) -> Status | None:
        return await self._outcome(
            "record_canceled", {**self._fence(claim), **self._progress(progress)}
        )

    async def hand_back(self, claim: Claim) -> Status | None:
        return await self._outcome("hand_back", self._fence(claim))

    async def reap_expired_leases(self, max_attempts: int) -> list[Row]:
        rows = await self.database.fetch_all(
            "reap_expired_leases",
            {"max_attempts": max_attempts, "outbox": self.outbox is not None},
        )
        self._told(rows)
        return rows

    async def claim_storage_cleanups(self, limit: int, lease_seconds: float) -> list[Row]:
        """Results whose bucket must be cleaned (``id``, ``job_id``, ``object_path``), each put
        off by ``lease_seconds`` so that other sweeps leave it alone meanwhile."""
        return await self.database.fetch_all(
            "claim_storage_cleanups", {"limit": limit, "lease_seconds": lease_seconds}
        )

    async def storage_cleaned(self, result_id: int) -> None:
        await self.database.fetch_one("storage_cleaned", {"id": result_id})

    async def require_storage_cleanup(self, result_id: int) -> bool:
        """After an outcome not recorded: whether the result ended without success meanwhile
        (its clean-up is then recorded as due)."""
        return (
            await self.database.fetch_one("require_storage_cleanup", {"id": result_id}) is not None
        )


class Deliveries:
    """The completion callbacks' outbox (migration 0009). Like `Attempts`, every outcome is
    fenced on (owner, attempt number): a delivery whose lease was taken over records nothing,
    and its outcome method answers None."""

    def __init__(self, database: Database, owner: str, lease_seconds: float) -> None:
        self.database = database
        self.owner = owner
        self.lease_seconds = lease_seconds

    def _fence(self, delivery: Delivery) -> dict[str, Any]:
        return {"id": delivery.result_id, "owner": self.owner, "attempts": delivery.attempt}

    async def claim(self, limit: int, max_attempts: int) -> tuple[list[Delivery], list[Row]]:
        """The deliveries this owner now holds, and the rows ended `failed` instead (their
        last attempt's process died with no attempt left)."""
        rows = await self.database.fetch_all(
            "claim_callbacks",
            {
                "limit": limit,
                "owner": self.owner,
                "lease_seconds": self.lease_seconds,
                "max_attempts": max_attempts,
            },
        )
        held = [Delivery.from_row(r) for r in rows if r["callback_status"] == "pending"]
        return held, [r for r in rows if r["callback_status"] != "pending"]

    async def seconds_until_next(self) -> float | None:
        row = await self.database.fetch_one("seconds_until_next_callback")
        return None if row is None else row["seconds"]

    async def delivered(self, delivery: Delivery) -> bool:
        return (
            await self.database.fetch_one("callback_delivered", self._fence(delivery)) is not None
        )

    async def hand_back(self, delivery: Delivery) -> bool:
        return (
            await self.database.fetch_one("callback_hand_back", self._fence(delivery)) is not None
        )

    async def not_delivered(
        self, delivery: Delivery, error: str, delay_seconds: float | None
    ) -> str | None:
        """Records the failed attempt: answers `pending` (retried after ``delay_seconds``),
        `failed` (``delay_seconds`` None), or None when the attempt was no longer ours."""
        row = await self.database.fetch_one(
            "callback_not_delivered",
            {**self._fence(delivery), "error": error, "delay_seconds": delay_seconds},
        )
        return None if row is None else str(row["callback_status"])


class Outbox:
    """The message intents of the broker transports (migration 0010), for the relay's sweep."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def sweep(
        self, limit: int, *, grace_seconds: float, lease_seconds: float, horizon_seconds: float
    ) -> list[Message]:
        """Up to ``limit`` intents a crash left behind (unsent ``grace_seconds`` after they
        were written), due within ``horizon_seconds``; each is left alone by other sweeps for
        ``lease_seconds`` (then taken again, if not `sent`)."""
        rows = await self.database.fetch_all(
            "outbox_sweep",
            {
                "limit": limit,
                "grace_seconds": grace_seconds,
                "lease_seconds": lease_seconds,
                "horizon_seconds": horizon_seconds,
            },
        )
        return [Message(int(r["id"]), int(r["result_id"]), r["not_before"]) for r in rows]

    async def sent(self, outbox_ids: Sequence[int]) -> None:
        """The broker accepted these: delete their rows."""
        if outbox_ids:
            await self.database.fetch_one("outbox_sent", {"ids": list(outbox_ids)})
