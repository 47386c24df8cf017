import pytest

from bgchallenge.domain.listing import (
    DEFAULT_LIMIT,
    MAX_RUNNING,
    InvalidQuery,
    ListQuery,
    Snapshot,
    decode_cursor,
    decode_position,
    encode_cursor,
    encode_position,
    etag_snapshots,
    if_none_match_matches,
    list_etag,
    parse_list_query,
)

KEY = b"k" * 32


def parse(**args: list[str]) -> ListQuery:
    return parse_list_query(args, KEY)


def test_defaults() -> None:
    assert parse() == ListQuery(job_id=None, statuses=None, limit=DEFAULT_LIMIT, after_id=0)


def test_statuses_are_a_set() -> None:
    assert parse(status=["running", "queued", "running"]).statuses == ("queued", "running")


def problems(**args: list[str]) -> dict[str, str]:
    with pytest.raises(InvalidQuery) as caught:
        parse_list_query(args, KEY)
    return {p.pointer: p.detail for p in caught.value.problems}


def test_every_problem_is_listed() -> None:
    assert problems(limit=["0"], status=["done"], page=["2"]) == {
        "?page": "unknown parameter",
        "?status": "unknown status 'done'",
        "?limit": "must be a whole number from 1 to 500",
    }
    assert "?limit" in problems(limit=["501"])
    assert "?limit" in problems(limit=["1", "2"])
    assert "?jobId" in problems(jobId=["x" * 201])


def test_cursor_round_trip_bound_to_filters() -> None:
    query = parse(jobId=["a"], status=["queued"], limit=["5"])
    cursor = encode_cursor(KEY, query, 41)
    assert decode_cursor(KEY, query, cursor) == 41
    assert parse(jobId=["a"], status=["queued"], limit=["9"], cursor=[cursor]).after_id == 41
    assert decode_cursor(KEY, parse(jobId=["b"], status=["queued"]), cursor) is None
    assert decode_cursor(b"other" * 8, query, cursor) is None
    assert decode_cursor(KEY, query, cursor[:-2] + "AA") is None
    assert decode_cursor(KEY, query, "not base64 at all!") is None
    assert "?cursor" in problems(jobId=["b"], cursor=[cursor])


S7 = Snapshot(7, 7, ())
S8 = Snapshot(5, 9, (5, 8))


def test_etag_is_strong_and_names_query_and_snapshot() -> None:
    query = parse(jobId=["a"])
    tag = list_etag(KEY, query, S7)
    assert tag.startswith('"') and tag.endswith('"') and '"' not in tag[1:-1]
    assert tag != list_etag(KEY, query, S8)
    assert tag != list_etag(KEY, parse(jobId=["b"]), S7)
    assert tag != list_etag(KEY, parse(jobId=["a"], limit=["5"]), S7)
    assert tag == list_etag(KEY, parse(jobId=["a"]), S7)


def test_etag_snapshots_reads_back_only_our_tags_for_this_query() -> None:
    query = parse(jobId=["a"])
    tag = list_etag(KEY, query, S8)
    header = f'"other", W/{tag}, {list_etag(KEY, parse(), S7)}, {list_etag(b"x" * 32, query, S7)}'
    assert etag_snapshots(KEY, query, header) == [(tag, S8)]
    assert etag_snapshots(KEY, query, "*") == []
    tampered = tag[:-3] + ("B" if tag[-3] != "B" else "C") + tag[-2:]
    assert etag_snapshots(KEY, query, tampered) == []


@pytest.mark.parametrize(
    "text", ["0:0:", "10:20:12,15", "10:20:", "18446744073709551000:18446744073709551615:"]
)
def test_position_round_trip(text: str) -> None:
    snapshot = Snapshot.parse(text)
    assert snapshot.text() == text
    assert decode_position(KEY, "p", encode_position(KEY, "p", snapshot)) == snapshot
    assert decode_position(KEY, "q", encode_position(KEY, "p", snapshot)) is None


@pytest.mark.parametrize("text", ["", "1:2", "5:3:", "1:5:7", "1:5:x"])
def test_snapshot_parse_refuses_what_postgresql_never_prints(text: str) -> None:
    with pytest.raises(ValueError):
        Snapshot.parse(text)


def test_a_long_running_list_is_narrowed_to_a_snapshot_that_sees_less() -> None:
    running = tuple(range(100, 100 + 3 * MAX_RUNNING, 3))
    wide = Snapshot(100, 1000, running)
    narrow = decode_position(KEY, "p", encode_position(KEY, "p", wide))
    assert narrow is not None and len(narrow.xip) == MAX_RUNNING
    assert len(encode_position(KEY, "p", wide)) <= 80

    def visible(snapshot: Snapshot, xid: int) -> bool:
        return xid < snapshot.xmin or (xid < snapshot.xmax and xid not in snapshot.xip)

    for xid in range(90, 1010):
        # never sees a transaction the real snapshot did not (a 304 could be stale)
        assert not visible(narrow, xid) or visible(wide, xid)
        # and sees the same below the cut
        if xid < narrow.xmax:
            assert visible(narrow, xid) == visible(wide, xid)


@pytest.mark.parametrize("text", ["", "A", "!!!!", "A" * 300, "AQAAAAAAAAAHAAAAAAAAAAAAAAAA"])
def test_positions_not_issued_here_are_refused(text: str) -> None:
    assert decode_position(KEY, "p", text) is None


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("*", True),
        (' "abc" ', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ('"x",W/"abc"', True),
        ('"x"', False),
        ('"ab"', False),
        ("", False),
    ],
)
def test_if_none_match_uses_weak_comparison(header: str | None, matches: bool) -> None:
    assert if_none_match_matches(header, '"abc"') is matches


def test_unicode_digits_and_unstorable_job_ids_are_refused() -> None:
    assert "?limit" in problems(limit=["²"])
    assert problems(jobId=["a\x00b"]) == {"?jobId": "must not contain NUL characters"}
