import pytest

from bgchallenge.domain.listing import (
    DEFAULT_LIMIT,
    InvalidQuery,
    ListQuery,
    decode_cursor,
    encode_cursor,
    if_none_match_matches,
    list_etag,
    parse_list_query,
)

KEY = b"k" * 32


def parse(**args: list[str]) -> ListQuery:
    return parse_list_query(args, KEY)


def test_defaults() -> None:
    assert parse() == ListQuery(job_id=None, statuses=None, limit=DEFAULT_LIMIT, after_id=0)
    assert parse().scope == "*"
    assert parse(jobId=["j"]).scope == "job:j"


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


def test_etag_is_strong_and_names_query_and_change_number() -> None:
    query = parse(jobId=["a"])
    tag = list_etag(query, 7)
    assert tag.startswith('"') and tag.endswith('"')
    assert tag != list_etag(query, 8)
    assert tag != list_etag(parse(jobId=["b"]), 7)
    assert tag != list_etag(parse(jobId=["a"], limit=["5"]), 7)
    assert tag == list_etag(parse(jobId=["a"]), 7)


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
