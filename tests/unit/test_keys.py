"""The S3 key of a result: ``results/<id>/<file name>``."""

from __future__ import annotations

import re

import pytest

from bgchallenge.domain.keys import object_key

SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


@pytest.mark.parametrize(
    ("object_path", "key"),
    [
        ("/cat.png", "results/7/cat.png"),
        ("/photos/2024/cat.png", "results/7/cat.png"),
        ("/photos/my_cat-1.v2.PNG", "results/7/my_cat-1.v2.PNG"),
    ],
)
def test_the_key_is_the_id_and_the_file_name(object_path: str, key: str) -> None:
    assert object_key(7, object_path) == key


@pytest.mark.parametrize(
    ("object_path", "name"),
    [
        ("/a/my cat!.png", "my-cat-.png"),
        ("/a/x@y#z.png", "x-y-z.png"),
        ("/a/caf\u00e9.png", "caf-.png"),
        ("/a/--cat.png", "cat.png"),  # leading and trailing "-" and "." are trimmed
        ("/a/.hidden.", "hidden"),
    ],
)
def test_unsafe_characters_are_replaced(object_path: str, name: str) -> None:
    assert object_key(1, object_path) == f"results/1/{name}"


@pytest.mark.parametrize(
    ("object_path", "name"),
    [
        ("/a/my%20cat.png", "my-cat.png"),  # decoded first: one "-", not "-20"
        ("/a/caf%C3%A9.png", "caf-.png"),
        ("/a/b%2Fc.png", "b-c.png"),  # an escaped "/" is not a separator
        ("/a/%2E%2E", "object"),
        ("/a/%41%42.png", "AB.png"),
    ],
)
def test_percent_escapes_are_decoded_first(object_path: str, name: str) -> None:
    assert object_key(1, object_path) == f"results/1/{name}"


@pytest.mark.parametrize("object_path", ["", "/", "//", "/..", "/%20", "/!!!"])
def test_no_usable_name_gives_object(object_path: str) -> None:
    assert object_key(3, object_path) == "results/3/object"


def test_long_names_are_cut_to_200_characters() -> None:
    key = object_key(5, "/" + "a" * 300 + ".png")
    assert key == "results/5/" + "a" * 200
    assert object_key(5, "/" + "b" * 200) == "results/5/" + "b" * 200


@pytest.mark.parametrize(
    "object_path", ["/../../etc/passwd", "/a/..%2F..%2Fsecret", "/a/%00nul", "/a/\\evil"]
)
def test_the_name_never_escapes_the_result_prefix(object_path: str) -> None:
    key = object_key(9, object_path)
    prefix = "results/9/"
    assert key.startswith(prefix)
    assert SAFE_NAME.fullmatch(key.removeprefix(prefix))
    assert key.removeprefix(prefix) not in {".", ".."}
