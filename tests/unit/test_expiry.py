"""Reading a presigned URL's expiry: one table per provider, from real-looking URLs.

AWS URLs come from botocore's own presigners (SigV4, the legacy ``s3`` SigV2 and CloudFront's
canned policy); Google's and Azure's are written by hand from their documented formats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.signers import CloudFrontSigner

from bgchallenge.domain.expiry import is_expired, url_expiry

WHEN = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
UNIX_WHEN = int(WHEN.timestamp())


def _s3_presigned(signature_version: str, expires_in: int) -> str:
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=Config(signature_version=signature_version),
    )
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": "photos", "Key": "cats/a b.png"}, ExpiresIn=expires_in
    )


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
@pytest.mark.parametrize("expires_in", [1, 900, 7 * 24 * 3600])
def test_aws_urls_from_botocore_presigner(signature_version: str, expires_in: int) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    url = _s3_presigned(signature_version, expires_in)
    after = datetime.now(UTC)
    expected = "X-Amz-Expires=" if signature_version == "s3v4" else "Expires="
    assert expected in url  # the presigner wrote the format under test
    expiry = url_expiry(url)
    assert expiry is not None
    assert before + timedelta(seconds=expires_in) <= expiry <= after + timedelta(seconds=expires_in)


def test_cloudfront_canned_policy_from_botocore_signer() -> None:
    signer = CloudFrontSigner("K2JCJMDEHXQW5F", lambda message: b"not a real signature")
    url = signer.generate_presigned_url(
        "https://d111111abcdef8.cloudfront.net/images/a.png", date_less_than=WHEN
    )
    assert url_expiry(url) == WHEN


AWS_SIGV4 = (
    "https://photos.s3.eu-west-1.amazonaws.com/cats/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261201%2Feu-west-1%2Fs3%2Faws4_request"
    "&{date}&{expires}&X-Amz-SignedHeaders=host&X-Amz-Signature=3a2e3e4ce80150b43342d116a79726c8"
)
GOOGLE_V4 = (
    "https://storage.googleapis.com/photos/cats/a.png?X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=signer%40project.iam.gserviceaccount.com%2F20261201%2Fauto%2Fstorage"
    "%2Fgoog4_request&{date}&{expires}&X-Goog-SignedHeaders=host&X-Goog-Signature=5c3a9f0e2b"
)
GOOGLE_V2 = (
    "https://storage.googleapis.com/photos/cats/a.png"
    "?GoogleAccessId=signer%40project.iam.gserviceaccount.com&{expires}&Signature=dGVzdA%3D%3D"
)
AZURE = (
    "https://account.blob.core.windows.net/photos/cats/a.png?sv=2022-11-02&ss=b&srt=o&sp=r"
    "&{expires}&st=2026-11-30T09%3A00%3A00Z&spr=https&sig=bm90IGEgc2lnbmF0dXJl%3D"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires=900"),
         WHEN + timedelta(seconds=900)),
        (AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires=0"), WHEN),
        (AWS_SIGV4.format(date="x-amz-date=20261201T100000Z", expires="X-AMZ-EXPIRES=60"),
         WHEN + timedelta(seconds=60)),
    ],
)  # fmt: skip
def test_aws_sigv4(url: str, expected: datetime) -> None:
    assert url_expiry(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (GOOGLE_V4.format(date="X-Goog-Date=20261201T100000Z", expires="X-Goog-Expires=3600"),
         WHEN + timedelta(hours=1)),
        (GOOGLE_V4.format(date="x-goog-date=20261201T100000Z", expires="X-GOOG-EXPIRES=604800"),
         WHEN + timedelta(days=7)),
        (GOOGLE_V2.format(expires=f"Expires={UNIX_WHEN}"), WHEN),
        (GOOGLE_V2.format(expires=f"expires={UNIX_WHEN}"), WHEN),
    ],
)  # fmt: skip
def test_google(url: str, expected: datetime) -> None:
    assert url_expiry(url) == expected


@pytest.mark.parametrize(
    ("se", "expected"),
    [
        ("se=2026-12-01T10%3A00%3A00Z", WHEN),
        ("se=2026-12-01T10:00:00Z", WHEN),
        ("se=2026-12-01T10%3A00Z", WHEN),  # without seconds
        ("se=2026-12-01T10%3A00%3A00.5Z", WHEN + timedelta(milliseconds=500)),
        ("se=2026-12-01T10%3A00%3A00.1234567Z", WHEN + timedelta(microseconds=123456)),
        ("se=2026-12-01", WHEN.replace(hour=0)),  # a date alone
        ("SE=2026-12-01T10%3A00%3A00Z", WHEN),
    ],
)
def test_azure_sas(se: str, expected: datetime) -> None:
    assert url_expiry(AZURE.format(expires=se)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a.png",
        "https://cdn.example.com/a.png?width=200",
        # SigV4 with a part missing or garbled
        AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Foo=1"),
        AWS_SIGV4.format(date="X-Amz-Foo=1", expires="X-Amz-Expires=900"),
        AWS_SIGV4.format(date="X-Amz-Date=2026-12-01T10:00:00Z", expires="X-Amz-Expires=900"),
        AWS_SIGV4.format(date="X-Amz-Date=20261301T100000Z", expires="X-Amz-Expires=900"),
        AWS_SIGV4.format(date="X-Amz-Date=20261201T250000Z", expires="X-Amz-Expires=900"),
        AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires=-5"),
        AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires=1e3"),
        AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires="),
        AWS_SIGV4.format(
            date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires=\uff19\uff10\uff10"
        ),
        AWS_SIGV4.format(date="X-Amz-Date=20261201T100000Z", expires="X-Amz-Expires=999999999999"),
        GOOGLE_V4.format(date="X-Goog-Date=yesterday", expires="X-Goog-Expires=60"),
        GOOGLE_V4.format(date="X-Goog-Date=20261201T100000Z", expires="X-Goog-Expires=soon"),
        GOOGLE_V2.format(expires="Expires=tomorrow"),
        GOOGLE_V2.format(expires="Expires=-1"),
        GOOGLE_V2.format(expires="Expires="),
        GOOGLE_V2.format(expires="Expires=1796119200.5"),
        AZURE.format(expires="se=2026-13-01T10%3A00%3A00Z"),
        AZURE.format(expires="se=2026-12-01T10%3A00%3A00%2B01%3A00"),  # not UTC
        AZURE.format(expires="se=12%2F01%2F2026"),
        AZURE.format(expires="se="),
        "https://cdn.example.com/a.png?X-Amz-Date=20261201T100000Z&X-Amz-Expires=%ZZ",
    ],
)
def test_malformed_or_missing_means_no_expiry(url: str) -> None:
    assert url_expiry(url) is None


def test_expired_at_the_instant_itself() -> None:
    assert not is_expired(None, WHEN)
    assert not is_expired(WHEN, WHEN - timedelta(microseconds=1))
    assert is_expired(WHEN, WHEN)
    assert is_expired(WHEN, WHEN + timedelta(seconds=1))
