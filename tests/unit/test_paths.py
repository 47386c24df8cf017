import pytest

from bgchallenge.domain.paths import InvalidUrl, normalise_path, parse_source_url


def identity(url: str) -> tuple[str, str]:
    source = parse_source_url(url)
    return source.host, source.object_path


def test_can_extract_object_path() -> None:
    source = parse_source_url("https://bucket.s3.amazonaws.com/photos/cat.png?X-Amz-Signature=s")
    assert source.host == "bucket.s3.amazonaws.com"
    assert source.object_path == "/photos/cat.png"
    assert source.public == "https://bucket.s3.amazonaws.com/photos/cat.png"
    assert source.full.endswith("X-Amz-Signature=s")


@pytest.mark.parametrize(
    "other",
    [
        "https://cdn.example.com/a/b.png?X-Amz-Signature=other&X-Amz-Date=2",  # another presigning
        "https://cdn.example.com/a/b.png#fragment",
        "HTTPS://CDN.Example.COM/a/b.png",  # case of scheme and host
        "https://cdn.example.com:443/a/b.png",  # the scheme's default port
        "https://cdn.example.com/a/%62.png",  # unreserved character escaped
        "https://cdn.example.com/a/./c/../b.png",  # dot segments
        "https://cdn.example.com/%61/b.png?",
    ],
)
def test_detects_duplicate_path(other: str) -> None:
    assert identity(other) == identity("https://cdn.example.com/a/b.png?X-Amz-Signature=one")


@pytest.mark.parametrize(
    "other",
    [
        "https://cdn.example.com/A/b.png",  # path case matters
        "http://cdn.example.com:8080/a/b.png",  # another port is another host
        "https://other.example.com/a/b.png",
        "https://cdn.example.com/a/b.png/",
        "https://cdn.example.com/a%2Fb.png",  # an escaped slash is not a slash
    ],
)
def test_tells_different_objects_apart(other: str) -> None:
    assert identity(other) != identity("https://cdn.example.com/a/b.png")


def test_percent_escapes_are_upper_cased_and_reserved_ones_kept() -> None:
    assert normalise_path("/a%2fb%7e%20c") == "/a%2Fb~%20c"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a/b/../../..", "/"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a//b", "/a//b"),
    ],
)
def test_removes_dot_segments(path: str, expected: str) -> None:
    assert normalise_path(path) == expected


def test_host_keeps_a_non_default_port_and_ipv6_brackets() -> None:
    assert parse_source_url("http://Example.com:8080/x").host == "example.com:8080"
    assert parse_source_url("http://[::1]:9000/x").host == "[::1]:9000"
    assert parse_source_url("http://example.com:80/x").host == "example.com"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.png", "absolute http or https"),
        ("/relative/a.png", "absolute http or https"),
        ("example.com/a.png", "absolute http or https"),
        ("https:///a.png", "must name a host"),
        ("https://user:secret@example.com/a.png", "credentials"),
        ("https://example.com:99999/a.png", "invalid port"),
        ("https://example.com/a b.png", "spaces"),
        ("https://example.com/" + "a" * 2048, "2048"),
    ],
)
def test_rejects_what_it_cannot_fetch(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrl, match=reason):
        parse_source_url(url)


def test_redact_queries_removes_every_query_and_fragment() -> None:
    from bgchallenge.domain.failures import Failure
    from bgchallenge.domain.paths import redact_queries

    text = (
        "GET https://b.s3.example.com/a.png?X-Amz-Signature=abc&d=1 failed; "
        'see "http://h:8080/p#frag" and HTTPS://x/y?z=1, not https://ok/plain.'
    )
    assert redact_queries(text) == (
        'GET https://b.s3.example.com/a.png failed; see "http://h:8080/p" and HTTPS://x/y '
        "not https://ok/plain."
    )
    failure = Failure("origin_unavailable", "ReadError for https://e.com/a?sig=secret")
    assert failure.message == "ReadError for https://e.com/a" and "secret" not in str(failure)
