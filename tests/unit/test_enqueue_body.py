import json
from datetime import UTC, datetime, timedelta

import pytest

from bgchallenge.domain.enqueue import InvalidBody, NotAnObject, parse_enqueue_body


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_accepts_a_job_and_url() -> None:
    parsed = parse_enqueue_body(body({"jobId": "j", "url": "https://e.com/a.png?sig=1"}))
    assert parsed.job_id == "j"
    assert parsed.source.object_path == "/a.png"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ([{"jobId": "j", "url": "https://e.com/a"}], "an array"),
        ([], "an array"),
        ("text", "a string"),
        (3, "a number"),
        (1.5, "a number"),
        (True, "a boolean"),
        (None, "null"),
    ],
)
def test_single_object_guard(value: object, kind: str) -> None:
    with pytest.raises(NotAnObject, match=f"single JSON object is required, not {kind}"):
        parse_enqueue_body(body(value))


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"jobId": NaN}', b"{'a': 1}"])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_enqueue_body(raw)
    assert caught.value.problems[0].pointer == "#"
    assert "malformed JSON" in caught.value.problems[0].detail


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000, b"[" * 60_000 + b"]" * 60_000],
    ids=["open-arrays", "nested-objects", "closed-arrays"],
)
def test_deeply_nested_json_is_malformed_not_a_crash(raw: bytes) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_enqueue_body(raw)
    assert caught.value.problems[0].pointer == "#"
    assert "nested too deeply" in caught.value.problems[0].detail


def pointers(value: object) -> dict[str, str]:
    with pytest.raises(InvalidBody) as caught:
        parse_enqueue_body(body(value))
    return {p.pointer: p.detail for p in caught.value.problems}


def test_lists_every_field_problem() -> None:
    assert pointers({"extra": 1, "jobId": "", "url": "ftp://x"}) == {
        "#/extra": "unknown member",
        "#/jobId": "must not be empty",
        "#/url": "must be an absolute http or https URL",
    }
    assert pointers({}) == {"#/jobId": "is required", "#/url": "is required"}
    assert pointers({"jobId": 5, "url": ["x"]}) == {
        "#/jobId": "must be a string",
        "#/url": "must be a string",
    }
    assert pointers({"jobId": "j" * 201, "url": ""}) == {
        "#/jobId": "must be at most 200 characters",
        "#/url": "must not be empty",
    }


def test_job_id_of_200_characters_is_fine() -> None:
    assert parse_enqueue_body(body({"jobId": "j" * 200, "url": "http://e.com/"})).job_id


def test_url_over_2048_characters() -> None:
    url = "https://e.com/" + "a" * 2040
    assert pointers({"jobId": "j", "url": url}) == {"#/url": "must be at most 2048 characters"}


def test_text_postgresql_cannot_store_is_refused() -> None:
    assert pointers({"jobId": "a\u0000b", "url": "https://e.com/a"}) == {
        "#/jobId": "must not contain NUL characters"
    }
    assert pointers({"jobId": "\ud800", "url": "https://e.com/\ud800"}) == {
        "#/jobId": "must be valid Unicode (no lone surrogates)",
        "#/url": "must be valid Unicode (no lone surrogates)",
    }


NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
SIGV4 = (
    "https://b.s3.amazonaws.com/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20261201T095500Z&X-Amz-Expires={}&X-Amz-Signature=abc"
)


def test_the_url_expiry_is_read_before_the_query_is_dropped() -> None:
    parsed = parse_enqueue_body(body({"jobId": "j", "url": SIGV4.format(600)}), now=NOW)
    assert parsed.url_expires_at == NOW + timedelta(minutes=5)
    assert "X-Amz" not in parsed.source.public
    plain = parse_enqueue_body(body({"jobId": "j", "url": "https://e.com/a.png"}), now=NOW)
    assert plain.url_expires_at is None


@pytest.mark.parametrize("expires", [300, 60, 0])  # at or before now
def test_a_url_already_expired_is_a_problem_of_the_url(expires: int) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_enqueue_body(body({"jobId": "j", "url": SIGV4.format(expires)}), now=NOW)
    (problem,) = caught.value.problems
    assert problem.pointer == "#/url"
    assert "expired" in problem.detail and "X-Amz" not in problem.detail


def test_a_malformed_expiry_is_no_expiry_and_no_problem() -> None:
    parsed = parse_enqueue_body(body({"jobId": "j", "url": SIGV4.format("-1")}), now=NOW)
    assert parsed.url_expires_at is None


def callback_body(callback_url: object) -> bytes:
    body = {"jobId": "j", "url": "https://e.com/a.png", "callbackUrl": callback_url}
    return json.dumps(body).encode()


def test_a_callback_url_is_kept_whole_and_shown_without_its_query() -> None:
    parsed = parse_enqueue_body(callback_body("https://Hooks.e.com/in?token=t"), callbacks=True)
    assert parsed.callback is not None
    assert parsed.callback.full == "https://Hooks.e.com/in?token=t"
    assert parsed.callback.public == "https://hooks.e.com/in"


@pytest.mark.parametrize(
    ("callback_url", "detail"),
    [
        ("ftp://e.com/x", "must be an absolute http or https URL"),
        ("/relative", "must be an absolute http or https URL"),
        ("https://e.com/" + "a" * 2048, "must be at most 2048 characters"),
        ("", "must not be empty"),
        (7, "must be a string"),
    ],
)
def test_a_callback_url_must_be_an_absolute_http_url(callback_url: object, detail: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_enqueue_body(callback_body(callback_url), callbacks=True)
    assert [(p.pointer, p.detail) for p in caught.value.problems] == [("#/callbackUrl", detail)]


def test_no_callback_url_without_a_webhook_secret() -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_enqueue_body(callback_body("https://e.com/hook"), callbacks=False)
    (problem,) = caught.value.problems
    assert problem.pointer == "#/callbackUrl" and "BGC_WEBHOOK_SECRET" in problem.detail
