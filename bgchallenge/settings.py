"""One immutable settings object, read from the environment once and validated."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MIN_PROGRESS_SECONDS = 0.1
# What carries the work (bgchallenge/queues/): PostgreSQL itself, or a broker.
QUEUES = ("postgres", "rabbitmq", "sqs")


class SettingsError(ValueError):
    """One or more settings are wrong; ``problems`` holds one clear line for each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = "bgchallenge"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 8
    max_bytes: int = 20 * MIB
    part_size: int = MIN_PART_SIZE
    signing_secret: str | None = None
    allow_networks: tuple[IpNetwork, ...] = ()
    lease_seconds: float = 30.0
    grace_seconds: float = 20.0
    sweep_seconds: float = 5.0
    retry_delays: tuple[float, ...] = (1.0, 4.0, 8.0)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    attempt_seconds: float = 600.0
    min_rate: int = 16 * 1024
    db_pool_size: int = 10
    s3_threads: int = 16
    progress_seconds: float = 1.0
    webhook_secret: str | None = None  # whsec_<base64>: signs completion callbacks
    callback_delays: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0)
    stream_max: int = 1000
    # the keep-alive interval the stream promises; tests shorten it, the environment cannot
    stream_keep_alive_seconds: float = 15.0
    queue: str = "postgres"  # BGC_QUEUE, one of QUEUES
    sqs_queue_url: str | None = None
    sqs_endpoint_url: str | None = None  # LocalStack, moto; None: AWS's own
    sqs_wait_seconds: int = 5  # the receive long poll (SQS allows up to 20)
    rabbitmq_url: str | None = None
    rabbitmq_queue: str = "bgchallenge.work"
    # The outbox of the broker transports: an intent still unsent this long after its commit
    # was left by a crash (the relay sends within milliseconds); the sweep looks this often.
    # Tests shorten them, the environment cannot.
    outbox_grace_seconds: float = 5.0
    outbox_sweep_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise `SettingsError` listing problems."""
        reader = _Reader(env)
        settings = cls(
            database_url=reader.get("DATABASE_URL", _database_url, None),
            s3_endpoint_url=reader.get("S3_ENDPOINT_URL", _http_url, None),
            s3_bucket=reader.get("S3_BUCKET", _bucket_name, cls.s3_bucket),
            host=reader.get("BGC_HOST", _non_empty, cls.host),
            port=reader.get("PORT", _int_in(0, 65535), cls.port),
            workers=reader.get("BGC_WORKERS", _int_in(1, 1000), cls.workers),
            max_bytes=reader.get("BGC_MAX_BYTES", _int_in(1, 5 * 1024**4), cls.max_bytes),
            part_size=reader.get(
                "BGC_PART_SIZE", _int_in(MIN_PART_SIZE, 5 * 1024**3), cls.part_size
            ),
            signing_secret=reader.get("BGC_SIGNING_SECRET", _non_empty, None),
            allow_networks=reader.get("BGC_ALLOW_NETWORKS", _networks, ()),
            lease_seconds=reader.get("BGC_LEASE_SECONDS", _seconds, cls.lease_seconds),
            grace_seconds=reader.get("BGC_GRACE_SECONDS", _seconds, cls.grace_seconds),
            sweep_seconds=reader.get("BGC_SWEEP_SECONDS", _seconds, cls.sweep_seconds),
            retry_delays=reader.get("BGC_RETRY_DELAYS", _delays, cls.retry_delays),
            connect_timeout=reader.get("BGC_CONNECT_TIMEOUT", _seconds, cls.connect_timeout),
            read_timeout=reader.get("BGC_READ_TIMEOUT", _seconds, cls.read_timeout),
            attempt_seconds=reader.get("BGC_ATTEMPT_SECONDS", _seconds, cls.attempt_seconds),
            min_rate=reader.get("BGC_MIN_RATE", _int_in(0, 1024**3), cls.min_rate),
            db_pool_size=reader.get("BGC_DB_POOL_SIZE", _int_in(2, 1000), cls.db_pool_size),
            s3_threads=reader.get("BGC_S3_THREADS", _int_in(1, 1000), cls.s3_threads),
            progress_seconds=reader.get(
                "BGC_PROGRESS_SECONDS", _progress_seconds, cls.progress_seconds
            ),
            webhook_secret=reader.get("BGC_WEBHOOK_SECRET", _webhook_secret, None),
            callback_delays=reader.get("BGC_CALLBACK_DELAYS", _delays, cls.callback_delays),
            stream_max=reader.get("BGC_STREAM_MAX", _int_in(1, 1_000_000), cls.stream_max),
            queue=reader.get("BGC_QUEUE", _one_of(QUEUES), cls.queue),
            sqs_queue_url=reader.get("SQS_QUEUE_URL", _http_url, None),
            sqs_endpoint_url=reader.get("SQS_ENDPOINT_URL", _http_url, None),
            sqs_wait_seconds=reader.get(
                "BGC_SQS_WAIT_SECONDS", _int_in(0, 20), cls.sqs_wait_seconds
            ),
            rabbitmq_url=reader.get("RABBITMQ_URL", _amqp_url, None),
            rabbitmq_queue=reader.get("BGC_RABBITMQ_QUEUE", _non_empty, cls.rabbitmq_queue),
        )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings

    def require_database(self) -> str:
        if not self.database_url:
            raise SettingsError(
                ["DATABASE_URL: not set (set it, or run `bgchallenge dev` for an embedded one)"]
            )
        return self.database_url

    def require_queue(self) -> None:
        """The chosen transport's own settings are there (`bgchallenge dev` provides them)."""
        needed = {
            "sqs": ("SQS_QUEUE_URL", self.sqs_queue_url),
            "rabbitmq": ("RABBITMQ_URL", self.rabbitmq_url),
        }
        if self.queue in needed:
            name, value = needed[self.queue]
            if not value:
                raise SettingsError([f"{name}: not set (BGC_QUEUE={self.queue} needs it)"])


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return default


def _non_empty(raw: str) -> str:
    return raw


def _database_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("not a postgresql:// URL")
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http:// or https:// URL")
    return raw


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {raw!r}")
        return raw

    return parse


def _amqp_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("amqp", "amqps") or not parts.netloc:
        raise ValueError("not an amqp:// or amqps:// URL")
    return raw


def _bucket_name(raw: str) -> str:
    valid = 3 <= len(raw) <= 63 and all(c.islower() or c.isdigit() or c in ".-" for c in raw)
    if not valid or not raw[0].isalnum() or not raw[-1].isalnum():
        raise ValueError("not a valid S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    return raw


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"not a whole number: {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, not {value}")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"not a number of seconds: {raw!r}") from None
    if not 0 <= value <= 86_400:
        raise ValueError(f"must be between 0 and 86400 seconds, not {raw}")
    return value


def _progress_seconds(raw: str) -> float:
    # a floor: each write is a database round trip and changes the list ETags
    value = _seconds(raw)
    if value < MIN_PROGRESS_SECONDS:
        raise ValueError(f"must be at least {MIN_PROGRESS_SECONDS} seconds, not {raw}")
    return value


def _delays(raw: str) -> tuple[float, ...]:
    return tuple(_seconds(part.strip()) for part in raw.split(","))


def _webhook_secret(raw: str) -> str:
    # The Standard Webhooks format: the key's bytes in base64 after a fixed prefix.
    prefix = "whsec_"
    text = raw.removeprefix(prefix)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        key = b""
    if not raw.startswith(prefix) or len(key) < 24:
        raise ValueError(
            "must be whsec_ followed by a base64 key of at least 24 bytes "
            "(e.g. whsec_$(head -c 32 /dev/urandom | base64))"
        )
    return raw


def _networks(raw: str) -> tuple[IpNetwork, ...]:
    networks = []
    for part in raw.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {part.strip()!r}") from None
    return tuple(networks)
