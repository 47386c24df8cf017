"""The results repository: one Trio method per named query, rows mapped to domain objects."""

from __future__ import annotations

from dataclasses import dataclass

from bgchallenge.db.database import Database
from bgchallenge.domain.enqueue import EnqueueRequest
from bgchallenge.domain.results import Result

# A concurrent insert of the same identity can commit between the statement's snapshot and
# its insert; the statement then sees neither row. Running it again always sees one.
_ENQUEUE_ATTEMPTS = 5


@dataclass(frozen=True)
class Enqueued:
    result: Result
    created: bool  # False: the identity existed already, ``result`` is the existing row


class Results:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def ping(self) -> None:
        await self.database.fetch_one("ping")

    async def enqueue(self, request: EnqueueRequest) -> Enqueued:
        params = {
            "job_id": request.job_id,
            "host": request.source.host,
            "object_path": request.source.object_path,
            "url": request.source.public,
            "source_url": request.source.full,
        }
        for _ in range(_ENQUEUE_ATTEMPTS):
            row = await self.database.fetch_one("enqueue_result", params)
            if row is not None:
                return Enqueued(Result.from_row(row), created=row["inserted"])
        raise RuntimeError("enqueue saw neither a new nor an existing row; this is a bug")

    async def get(self, result_id: int) -> Result | None:
        row = await self.database.fetch_one("get_result", {"id": result_id})
        return Result.from_row(row) if row else None
