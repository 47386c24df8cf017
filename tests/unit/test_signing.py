import pytest

from bgchallenge.domain.signing import SignatureRejected, check_freshness, sign, verify


def test_signature_covers_timestamp_method_target_and_body() -> None:
    good = sign("s3cret", "1700000000", "POST", "/results/enqueue?x=1", b"{}")
    assert good.startswith("sha256=") and len(good) == 7 + 64
    args = {
        "timestamp": "1700000000",
        "method": "POST",
        "target": "/results/enqueue?x=1",
        "body": b"{}",
    }
    verify("s3cret", signature=good, **args)  # type: ignore[arg-type]
    for name, other in [
        ("timestamp", "1700000001"),
        ("method", "GET"),
        ("target", "/results/enqueue"),
        ("body", b"{ }"),
    ]:
        with pytest.raises(SignatureRejected, match="does not match"):
            verify("s3cret", signature=good, **{**args, name: other})  # type: ignore[arg-type]
    with pytest.raises(SignatureRejected, match="does not match"):
        verify("other", signature=good, **args)  # type: ignore[arg-type]
    with pytest.raises(SignatureRejected, match="missing"):
        verify("s3cret", signature=None, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("soon", "whole number"),
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
