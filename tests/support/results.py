"""Reading results and bucket state straight from PostgreSQL and S3, for assertions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import psycopg
import trio
from psycopg.rows import dict_row


async def eventually(condition: Callable[[], object], *, interval: float = 0.05) -> None:
    """Poll ``condition`` (state outside this process: nothing to wait on) until it is truthy."""
    while True:
        if condition():
            return
        await trio.sleep(interval)


def fetch_rows(database_url: str, where: str = "true") -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as connection:
        return connection.execute(f"SELECT * FROM results WHERE {where} ORDER BY id").fetchall()


def count_terminal(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM results WHERE status IN ('succeeded', 'failed', 'canceled')"
        ).fetchone()
        assert row is not None
        return int(row[0])


async def wait_until_terminal(
    database_url: str, count: int, *, within: float = 30.0
) -> list[dict[str, Any]]:
    """Poll (a count, cheap) until ``count`` results are terminal; answer all rows."""
    with trio.fail_after(within):
        while True:
            if await trio.to_thread.run_sync(count_terminal, database_url) >= count:
                return await trio.to_thread.run_sync(fetch_rows, database_url)
            await trio.sleep(0.05)


class Bucket:
    def __init__(self, endpoint: str, name: str) -> None:
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.name = name

    def object_keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return [o["Key"] for o in listing.get("Contents", [])]

    def uploads(self) -> list[str]:
        listing = self.client.list_multipart_uploads(Bucket=self.name)
        return [u["Key"] for u in listing.get("Uploads", [])]

    def object(self, key: str) -> tuple[bytes, str]:
        answer = self.client.get_object(Bucket=self.name, Key=key)
        return answer["Body"].read(), answer["ContentType"]


def insert_results(
    database_url: str, urls: list[str], job: str = "job", *, outbox: bool = True
) -> list[int]:
    """Insert queued results straight into the table (the trigger sends their NOTIFYs); answer
    their ids. With ``outbox``, their message intents too, as a crash right after the commit
    would leave them: a broker transport's sweep sends them at once (``postgres`` ignores
    the outbox)."""
    rows = [
        (job, url.split("/")[2], "/" + url.split("/", 3)[3].split("?")[0], url.split("?")[0], url)
        for url in urls
    ]
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        ids = []
        for row in rows:
            cursor.execute(
                "INSERT INTO results (job_id, host, object_path, url, source_url) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                row,
            )
            fetched = cursor.fetchone()
            assert fetched is not None
            ids.append(int(fetched[0]))
        if outbox:
            cursor.execute(
                "INSERT INTO queue_outbox (result_id, relay_after) "
                "SELECT unnest(%s::bigint[]), now() - interval '1 hour'",
                (ids,),
            )
        return ids
