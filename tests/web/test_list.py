"""GET /results/list: filters, pagination, and ETags that are never stale."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from tests.conftest import IO_GUARD_SECONDS, RunningService
from tests.support.results import insert_results

# Every blocking database call runs in a thread: the service under test shares this Trio loop.


async def add(database_url: str, count: int, job: str = "job", start: int = 0) -> None:
    urls = [f"https://cdn.example.com/{job}/{n}.png" for n in range(start, start + count)]
    await trio.to_thread.run_sync(lambda: insert_results(database_url, urls, job=job))


async def execute(database_url: str, statement: str) -> None:
    """One statement in a transaction of its own, committed when this returns."""

    def run() -> None:
        with psycopg.connect(database_url) as connection:
            connection.execute(statement)

    await trio.to_thread.run_sync(run)


class Session:
    """A connection whose transaction stays open between calls, driven from a thread."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, database_url: str) -> Session:
        return cls(await trio.to_thread.run_sync(psycopg.connect, database_url))

    async def execute(self, statement: str) -> None:
        await trio.to_thread.run_sync(self.connection.execute, statement)

    async def commit(self) -> None:
        await trio.to_thread.run_sync(self.connection.commit)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.connection.close)


async def test_returns_304_when_unchanged(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 3)
        first = await service.client.get("/results/list")
        etag = first.headers["ETag"]
        again = await service.client.get("/results/list", headers={"If-None-Match": etag})
    assert first.status_code == 200 and len(first.json()["items"]) == 3
    assert etag.startswith('"') and not etag.startswith("W/")
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag


async def test_returns_items_when_updated(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 2)
        etag = (await service.client.get("/results/list")).headers["ETag"]
        await add(database_url, 1, start=10)
        inserted = await service.client.get("/results/list", headers={"If-None-Match": etag})
        assert inserted.status_code == 200 and len(inserted.json()["items"]) == 3
        etag = inserted.headers["ETag"]
        await execute(
            database_url,
            "UPDATE results SET status = 'canceled', ended_at = clock_timestamp(),"
            " source_url = NULL, updated_at = clock_timestamp() WHERE id = 1",
        )
        changed = await service.client.get("/results/list", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["items"][0]["status"] == "canceled"
    assert changed.headers["ETag"] != etag


async def test_etag_changes_when_transactions_commit_out_of_timestamp_order(
    service: RunningService, database_url: str
) -> None:
    """A transaction that began first (older timestamps, older xid) commits last: still a new
    ETag. The order is made by each call returning before the next starts."""
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 1)
        early = await Session.open(database_url)
        late = await Session.open(database_url)
        try:
            # now(): this transaction's start, the older timestamp
            await early.execute("UPDATE results SET attempts = 7, updated_at = now() WHERE id = 1")
            await late.execute(
                "INSERT INTO results (job_id, host, object_path, url) "
                "VALUES ('job', 'cdn.example.com', '/late.png', 'https://cdn.example.com/late.png')"
            )
            await late.commit()
            seen = await service.client.get("/results/list")
            assert [i["attempts"] for i in seen.json()["items"]] == [0, 0]
            await early.commit()
            after = await service.client.get(
                "/results/list", headers={"If-None-Match": seen.headers["ETag"]}
            )
        finally:
            await early.close()
            await late.close()
    assert after.status_code == 200, "a stale 304 would lose the first transaction's change"
    assert [i["attempts"] for i in after.json()["items"]] == [7, 0]


async def test_etag_changes_for_a_write_inside_a_savepoint(
    service: RunningService, database_url: str
) -> None:
    """A subtransaction's write is recorded under the top-level transaction: it is seen as a
    change exactly when that commits."""
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 1)
        writer = await Session.open(database_url)
        try:
            await writer.execute("SAVEPOINT s")
            await writer.execute("UPDATE results SET attempts = 3 WHERE id = 1")
            await writer.execute("RELEASE SAVEPOINT s")
            seen = await service.client.get("/results/list")
            await writer.commit()
            after = await service.client.get(
                "/results/list", headers={"If-None-Match": seen.headers["ETag"]}
            )
        finally:
            await writer.close()
    assert seen.json()["items"][0]["attempts"] == 0
    assert after.status_code == 200 and after.json()["items"][0]["attempts"] == 3


async def test_an_empty_list_has_an_etag_until_a_result_arrives(
    service: RunningService, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        empty = await service.client.get("/results/list?jobId=later")
        etag = empty.headers["ETag"]
        still = await service.client.get(
            "/results/list?jobId=later", headers={"If-None-Match": etag}
        )
        await add(database_url, 1, job="later")
        arrived = await service.client.get(
            "/results/list?jobId=later", headers={"If-None-Match": etag}
        )
    assert empty.json()["items"] == [] and still.status_code == 304
    assert arrived.status_code == 200 and len(arrived.json()["items"]) == 1


async def test_a_lease_extension_is_not_a_change(
    service: RunningService, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 1)
        await execute(
            database_url,
            "UPDATE results SET status = 'running', attempts = 1, lease_owner = 'w',"
            " lease_expires_at = clock_timestamp() + interval '30 seconds' WHERE id = 1",
        )
        etag = (await service.client.get("/results/list")).headers["ETag"]
        await execute(
            database_url,
            "UPDATE results SET lease_expires_at = lease_expires_at + interval '30 seconds'"
            " WHERE id = 1",
        )
        again = await service.client.get("/results/list", headers={"If-None-Match": etag})
    assert again.status_code == 304


async def test_concurrent_conditional_lists_each_get_their_own_answer(
    service: RunningService, database_url: str
) -> None:
    """Checks that arrive together share one statement; each still answers for its query."""
    jobs = [f"j{n}" for n in range(6)]
    answers: dict[str, int] = {}
    with trio.fail_after(IO_GUARD_SECONDS):
        for job in jobs:
            await add(database_url, 2, job=job)
        tags = {}
        for query in ["", *(f"?jobId={job}" for job in jobs)]:
            tags[query] = (await service.client.get("/results/list" + query)).headers["ETag"]
        await add(database_url, 1, job="j0", start=50)

        async def ask(query: str) -> None:
            response = await service.client.get(
                "/results/list" + query, headers={"If-None-Match": tags[query]}
            )
            answers[query] = response.status_code

        async with trio.open_nursery() as nursery:
            for query in tags:
                nursery.start_soon(ask, query)
    assert answers == {"": 200, "?jobId=j0": 200} | {f"?jobId={job}": 304 for job in jobs[1:]}


async def test_a_tag_that_is_not_ours_is_a_plain_miss(service: RunningService) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        etag = (await service.client.get("/results/list")).headers["ETag"]
        answers = [
            (
                await service.client.get("/results/list", headers={"If-None-Match": header})
            ).status_code
            for header in [etag[:-3] + 'xx"', '"' + "A" * 5000 + '"', '"', '"a"b"', "W/", ","]
        ]
    assert answers == [200] * 6


async def test_if_none_match_lists_weak_tags_and_star(
    service: RunningService, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 1)
        etag = (await service.client.get("/results/list")).headers["ETag"]
        answers = {}
        for header in [f'"other", {etag}', f"W/{etag}", "*", '"other"', f'W/"x", W/{etag}']:
            response = await service.client.get("/results/list", headers={"If-None-Match": header})
            answers[header] = response.status_code
    assert answers == {
        f'"other", {etag}': 304,
        f"W/{etag}": 304,
        "*": 304,
        '"other"': 200,
        f'W/"x", W/{etag}': 304,
    }


async def test_etag_is_for_exactly_that_query(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 3, job="a")
        await add(database_url, 3, job="b")
        tags = set()
        for query in ["", "?jobId=a", "?jobId=b", "?limit=2", "?status=queued"]:
            tags.add((await service.client.get("/results/list" + query)).headers["ETag"])
        only_a = await service.client.get("/results/list?jobId=a")
        await add(database_url, 1, job="b", start=100)
        # a change to job b leaves job a's answer, and its ETag, as they were
        a_again = await service.client.get(
            "/results/list?jobId=a", headers={"If-None-Match": only_a.headers["ETag"]}
        )
    assert len(tags) == 5
    assert a_again.status_code == 304


async def test_filters_and_order(service: RunningService, database_url: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 3, job="a")
        await add(database_url, 2, job="b")
        await execute(
            database_url,
            "UPDATE results SET status = 'failed', ended_at = clock_timestamp(),"
            " source_url = NULL, error_code = 'not_found' WHERE id IN (2, 5)",
        )
        a = (await service.client.get("/results/list?jobId=a")).json()
        failed = (await service.client.get("/results/list?status=failed")).json()
        both = (await service.client.get("/results/list?status=failed&status=queued")).json()
        a_queued = (await service.client.get("/results/list?jobId=a&status=queued")).json()
    assert [i["id"] for i in a["items"]] == [1, 2, 3] and a["nextCursor"] is None
    assert [i["id"] for i in failed["items"]] == [2, 5]
    assert [i["id"] for i in both["items"]] == [1, 2, 3, 4, 5]
    assert [i["id"] for i in a_queued["items"]] == [1, 3]


async def test_pagination_returns_every_item_exactly_once_while_rows_are_inserted(
    service: RunningService, database_url: str
) -> None:
    seen: list[int] = []

    async def insert_more() -> None:
        for batch in range(10):
            await add(database_url, 10, "job", 1000 + batch * 10)

    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 250)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(insert_more)
            cursor = None
            while True:
                query = "/results/list?limit=17" + (f"&cursor={cursor}" if cursor else "")
                page = (await service.client.get(query)).json()
                seen += [item["id"] for item in page["items"]]
                cursor = page["nextCursor"]
                if cursor is None:
                    break
    assert len(seen) == len(set(seen)), "an item came twice"
    assert set(range(1, 251)) <= set(seen), "an item that existed before was missed"
    assert seen == sorted(seen)


@pytest.mark.parametrize(
    ("query", "pointer"),
    [
        ("limit=0", "?limit"),
        ("limit=501", "?limit"),
        ("limit=ten", "?limit"),
        ("limit=-1", "?limit"),
        ("status=done", "?status"),
        ("cursor=forged", "?cursor"),
        ("cursor=AAAAAAAAAAEAAAAAAAAAAAAAAAAA", "?cursor"),
        ("jobid=a", "?jobid"),
        ("limit=1&limit=2", "?limit"),
    ],
)
async def test_bad_queries_are_400(service: RunningService, query: str, pointer: str) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        response = await service.client.get(f"/results/list?{query}")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert pointer in [e["pointer"] for e in response.json()["errors"]]


async def test_a_cursor_only_continues_the_query_it_came_from(
    service: RunningService, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        await add(database_url, 3, job="a")
        page = (await service.client.get("/results/list?jobId=a&limit=1")).json()
        cursor = page["nextCursor"]
        same = await service.client.get(f"/results/list?jobId=a&limit=2&cursor={cursor}")
        other = await service.client.get(f"/results/list?jobId=b&cursor={cursor}")
    assert [i["id"] for i in same.json()["items"]] == [2, 3]
    assert other.status_code == 400
