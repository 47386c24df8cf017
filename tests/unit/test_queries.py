import pytest

from bgchallenge.db.queries import load_queries, parse_queries


def test_named_blocks() -> None:
    assert parse_queries("-- x\n-- name: a\nSELECT 1;\n\n-- name: b\nSELECT 2;\n") == {
        "a": "SELECT 1;",
        "b": "SELECT 2;",
    }


def test_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_the_project_file_loads() -> None:
    assert {"ping", "enqueue_results", "get_result"} <= set(load_queries())


def test_fragments_stand_where_queries_name_them() -> None:
    text = (
        "-- fragment: cols\n-- what a client sees\nid, job_id\n\n"
        "-- name: a\nSELECT {cols} FROM results;\n"
        "-- name: b\nUPDATE results SET x = 1 RETURNING {cols};\n"
    )
    assert parse_queries(text) == {
        "a": "SELECT id, job_id FROM results;",
        "b": "UPDATE results SET x = 1 RETURNING id, job_id;",
    }


def test_an_unknown_fragment_is_an_error() -> None:
    with pytest.raises(ValueError, match="no fragment 'cols'"):
        parse_queries("-- name: a\nSELECT {cols} FROM results;\n")


def test_no_query_of_the_project_file_keeps_a_placeholder() -> None:
    assert not [name for name, sql in load_queries().items() if "{" in sql]
