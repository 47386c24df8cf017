import hashlib
import hmac

import pytest

from bgchallenge.domain.signing import (
    SignatureRejected,
    body_digest,
    canonical_string,
    check_freshness,
    sign,
    verify,
)


def check(
    secret: str, signature: str | None, timestamp: str, method: str, target: str, body: bytes
) -> None:
    verify(
        secret,
        timestamp=timestamp,
        signature=signature,
        method=method,
        target=target,
        digest=body_digest(body),
    )


def test_signature_covers_timestamp_method_target_and_body() -> None:
    good = sign("s3cret", "1700000000", "POST", "/results/enqueue?x=1", b"{}")
    assert good.startswith("sha256=") and len(good) == 7 + 64
    args = ("1700000000", "POST", "/results/enqueue?x=1", b"{}")
    check("s3cret", good, *args)
    for index, other in enumerate(["1700000001", "GET", "/results/enqueue", b"{ }"]):
        changed = list(args)
        changed[index] = other
        with pytest.raises(SignatureRejected, match="does not match"):
            check("s3cret", good, *changed)  # type: ignore[arg-type]
    with pytest.raises(SignatureRejected, match="does not match"):
        check("other", good, *args)
    with pytest.raises(SignatureRejected, match="missing"):
        check("s3cret", None, *args)


def test_the_canonical_string_is_the_documented_one() -> None:
    """docs/http.md, "Signing": timestamp, METHOD, target, the body's hex SHA-256, by line feeds."""
    body = b'{"jobId":"j"}'
    digest = hashlib.sha256(body).hexdigest()
    expected = f"1700000000\nPOST\n/results/enqueue?a=1\n{digest}".encode()
    assert canonical_string("1700000000", "post", "/results/enqueue?a=1", digest) == expected
    mac = hmac.new(b"k", expected, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", "post", "/results/enqueue?a=1", body) == "sha256=" + mac
    assert body_digest(b"") == hashlib.sha256(b"").hexdigest()


def test_a_query_cannot_be_reread_as_a_body() -> None:
    """The old ``.``-joined string let this list request's signature verify another job's."""
    signed = sign(
        "s3cret", "1700000000", "GET", "/results/list?jobId=batch.2024&status=failed", b""
    )
    with pytest.raises(SignatureRejected, match="does not match"):
        check(
            "s3cret",
            signed,
            "1700000000",
            "GET",
            "/results/list?jobId=batch",
            b"2024&status=failed.",
        )


def test_a_field_with_a_line_feed_is_never_signed() -> None:
    with pytest.raises(ValueError, match="line feed"):
        canonical_string("1700000000", "GET", "/results/1\nGET", body_digest(b""))
    good = sign("s", "1", "GET", "/results/1", b"")
    with pytest.raises(SignatureRejected, match="does not match"):
        check("s", good, "1", "GET", "/results/1\n", b"")


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("soon", "whole number"),
        ("1_000", "whole number"),
        (" 1000", "whole number"),
        ("1000\n", "whole number"),
        ("-1000", "whole number"),
        ("699", "more than 5 minutes"),
        ("1301", "more than 5 minutes"),
    ],
)
def test_freshness(timestamp: str | None, message: str) -> None:
    with pytest.raises(SignatureRejected, match=message):
        check_freshness(timestamp, now=1000.0)


def test_five_minutes_either_way_is_fresh() -> None:
    check_freshness("700", now=1000.0)
    check_freshness("1300", now=1000.0)
