import ipaddress

import pytest

from bgchallenge.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8000 and settings.workers == 8
    assert settings.max_bytes == 20 * 1024 * 1024
    assert settings.retry_delays == (1.0, 4.0, 8.0)
    assert settings.lease_seconds == 30 and settings.grace_seconds == 20
    assert settings.signing_secret is None and settings.database_url is None


def test_reads_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "PORT": "9000",
            "BGC_WORKERS": "3",
            "BGC_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128",
            "BGC_RETRY_DELAYS": "0.1,0.2",
            "S3_BUCKET": "my-bucket",
            "BGC_SIGNING_SECRET": "k",
        }
    )
    assert settings.port == 9000 and settings.workers == 3
    assert settings.allow_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert settings.retry_delays == (0.1, 0.2)
    assert settings.s3_bucket == "my-bucket" and settings.signing_secret == "k"


def test_every_problem_is_one_clear_line() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "DATABASE_URL": "mysql://x",
                "PORT": "eighty",
                "BGC_WORKERS": "0",
                "S3_BUCKET": "A",
                "BGC_ALLOW_NETWORKS": "10.0.0.0/8,nope",
                "BGC_PART_SIZE": "1024",
            }
        )
    assert caught.value.problems == [
        "DATABASE_URL: not a postgresql:// URL",
        "S3_BUCKET: not a valid S3 bucket name (3-63 lower-case letters, digits, '.', '-')",
        "PORT: not a whole number: 'eighty'",
        "BGC_WORKERS: must be between 1 and 1000, not 0",
        "BGC_PART_SIZE: must be between 5242880 and 5368709120, not 1024",
        "BGC_ALLOW_NETWORKS: not an IP network: 'nope'",
    ]


def test_database_is_required_to_serve() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL: not set"):
        Settings.from_env({}).require_database()


def test_queue_transport_and_its_settings() -> None:
    assert Settings.from_env({}).queue == "postgres"
    Settings.from_env({}).require_queue()  # postgres needs nothing more
    sqs = Settings.from_env(
        {
            "BGC_QUEUE": "sqs",
            "SQS_QUEUE_URL": "http://localhost:4566/000000000000/work",
            "SQS_ENDPOINT_URL": "http://localhost:4566",
            "BGC_SQS_WAIT_SECONDS": "20",
        }
    )
    sqs.require_queue()
    assert (sqs.queue, sqs.sqs_wait_seconds) == ("sqs", 20)
    rabbit = Settings.from_env({"BGC_QUEUE": "rabbitmq"})
    assert rabbit.rabbitmq_queue == "bgchallenge.work"
    with pytest.raises(SettingsError, match="RABBITMQ_URL: not set"):
        rabbit.require_queue()
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"BGC_QUEUE": "SQS", "RABBITMQ_URL": "http://x", "BGC_SQS_WAIT_SECONDS": "21"}
        )
    assert caught.value.problems == [
        "BGC_QUEUE: must be one of postgres, rabbitmq, sqs, not 'SQS'",
        "BGC_SQS_WAIT_SECONDS: must be between 0 and 20, not 21",
        "RABBITMQ_URL: not an amqp:// or amqps:// URL",
    ]


def test_attempt_bounds() -> None:
    defaults = Settings.from_env({})
    assert defaults.attempt_seconds == 600 and defaults.min_rate == 16 * 1024
    settings = Settings.from_env({"BGC_ATTEMPT_SECONDS": "90.5", "BGC_MIN_RATE": "0"})
    assert settings.attempt_seconds == 90.5 and settings.min_rate == 0
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"BGC_ATTEMPT_SECONDS": "soon", "BGC_MIN_RATE": "-1"})
    assert caught.value.problems == [
        "BGC_ATTEMPT_SECONDS: not a number of seconds: 'soon'",
        "BGC_MIN_RATE: must be between 0 and 1073741824, not -1",
    ]


def test_progress_seconds() -> None:
    assert Settings.from_env({}).progress_seconds == 1.0
    assert Settings.from_env({"BGC_PROGRESS_SECONDS": "2.5"}).progress_seconds == 2.5
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"BGC_PROGRESS_SECONDS": "0"})
    assert caught.value.problems == ["BGC_PROGRESS_SECONDS: must be at least 0.1 seconds, not 0"]
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"BGC_PROGRESS_SECONDS": "often"})
    assert caught.value.problems == ["BGC_PROGRESS_SECONDS: not a number of seconds: 'often'"]


def test_webhook_secret_and_callback_delays() -> None:
    defaults = Settings.from_env({})
    assert defaults.webhook_secret is None
    assert defaults.callback_delays == (5.0, 30.0, 120.0, 600.0, 3600.0)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    read = Settings.from_env({"BGC_WEBHOOK_SECRET": secret, "BGC_CALLBACK_DELAYS": "0.5, 2"})
    assert read.webhook_secret == secret
    assert read.callback_delays == (0.5, 2.0)


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!", "whsec_YWJj"]
)
def test_a_webhook_secret_must_be_whsec_base64(secret: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"BGC_WEBHOOK_SECRET": secret})
    (problem,) = caught.value.problems
    assert problem.startswith("BGC_WEBHOOK_SECRET: must be whsec_ followed by a base64 key")


def test_stream_max() -> None:
    assert Settings.from_env({}).stream_max == 1000
    assert Settings.from_env({"BGC_STREAM_MAX": "3"}).stream_max == 3
    with pytest.raises(SettingsError, match="BGC_STREAM_MAX"):
        Settings.from_env({"BGC_STREAM_MAX": "0"})
