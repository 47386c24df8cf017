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
