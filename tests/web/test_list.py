"""GET /results/list: filters, pagination, and ETags that are never stale."""

from __future__ import annotations

import psycopg
import pytest
import trio

from tests.conftest import IO_GUARD_SECONDS, RunningService
from tests.support.results import insert_results


def add(database_url: str, count: int, job: str = "job", start: int = 0) -> None:
    insert_results(
        database_url,
        [f"https://cdn.example.com/{job}/{n}.png" for n in range(start, start + count)],
        job=job,
    )


async def test_returns_304_when_unchanged(service: RunningService, database_url: str) -> None:
    add(database_url, 3)
    with trio.fail_after(IO_GUARD_SECONDS):
        first = await service.client.get("/results/list")
        etag = first.headers["ETag"]
        again = await service.client.get("/results/list", headers={"If-None-Match": etag})
    assert first.status_code == 200 and len(first.json()["items"]) == 3
    assert etag.startswith('"') and not etag.startswith("W/")
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag


async def test_returns_items_when_updated(service: RunningService, database_url: str) -> None:
    add(database_url, 2)
    with trio.fail_after(IO_GUARD_SECONDS):
        etag = (await service.client.get("/results/list")).headers["ETag"]
        add(database_url, 1, start=10)
        inserted = await service.client.get("/results/list", headers={"If-None-Match": etag})
        assert inserted.status_code == 200 and len(inserted.json()["items"]) == 3
        etag = inserted.headers["ETag"]
        with psycopg.connect(database_url) as connection:
            connection.execute(
                "UPDATE results SET status = 'canceled', ended_at = clock_timestamp(),"
                " source_url = NULL, updated_at = clock_timestamp() WHERE id = 1"
            )
        changed = await service.client.get("/results/list", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["items"][0]["status"] == "canceled"
    assert changed.headers["ETag"] != etag


async def test_etag_changes_when_transactions_commit_out_of_timestamp_order(
    service: RunningService, database_url: str
) -> None:
    """A transaction that began first (older timestamps) commits last: still a new ETag."""
    add(database_url, 1)
    early = psycopg.connect(database_url)
    late = psycopg.connect(database_url)
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            early.execute(
                "UPDATE results SET attempts = 7, updated_at = now() WHERE id = 1"
            )  # now(): this transaction's start, the older timestamp
            await trio.sleep(0.05)
            late.execute(
                "INSERT INTO results (job_id, host, object_path, url) "
                "VALUES ('job', 'cdn.example.com', '/late.png', 'https://cdn.example.com/late.png')"
            )
            late.commit()
            seen = await service.client.get("/results/list")
            assert [i["attempts"] for i in seen.json()["items"]] == [0, 0]
            early.commit()
            after = await service.client.get(
                "/results/list", headers={"If-None-Match": seen.headers["ETag"]}
            )
    finally:
        early.close()
        late.close()
    assert after.status_code == 200, "a stale 304 would lose the first transaction's change"
    assert [i["attempts"] for i in after.json()["items"]] == [7, 0]


async def test_if_none_match_lists_weak_tags_and_star(
    service: RunningService, database_url: str
) -> None:
    add(database_url, 1)
    with trio.fail_after(IO_GUARD_SECONDS):
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
    add(database_url, 3, job="a")
    add(database_url, 3, job="b")
    with trio.fail_after(IO_GUARD_SECONDS):
        tags = set()
        for query in ["", "?jobId=a", "?jobId=b", "?limit=2", "?status=queued"]:
            tags.add((await service.client.get("/results/list" + query)).headers["ETag"])
        only_a = await service.client.get("/results/list?jobId=a")
        add(database_url, 1, job="b", start=100)
        # a change to job b leaves job a's answer, and its ETag, as they were
        a_again = await service.client.get(
            "/results/list?jobId=a", headers={"If-None-Match": only_a.headers["ETag"]}
        )
    assert len(tags) == 5
    assert a_again.status_code == 304


async def test_filters_and_order(service: RunningService, database_url: str) -> None:
    add(database_url, 3, job="a")
    add(database_url, 2, job="b")
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "UPDATE results SET status = 'failed', ended_at = clock_timestamp(),"
            " source_url = NULL, error_code = 'not_found' WHERE id IN (2, 5)"
        )
    with trio.fail_after(IO_GUARD_SECONDS):
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
    add(database_url, 250)
    seen: list[int] = []

    async def insert_more() -> None:
        for batch in range(10):
            await trio.to_thread.run_sync(add, database_url, 10, "job", 1000 + batch * 10)
            await trio.sleep(0.01)

    with trio.fail_after(IO_GUARD_SECONDS):
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
    add(database_url, 3, job="a")
    with trio.fail_after(IO_GUARD_SECONDS):
        page = (await service.client.get("/results/list?jobId=a&limit=1")).json()
        cursor = page["nextCursor"]
        same = await service.client.get(f"/results/list?jobId=a&limit=2&cursor={cursor}")
        other = await service.client.get(f"/results/list?jobId=b&cursor={cursor}")
    assert [i["id"] for i in same.json()["items"]] == [2, 3]
    assert other.status_code == 400
