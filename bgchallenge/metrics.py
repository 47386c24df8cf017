"""Prometheus metrics of one process, in a registry of its own (passed down, never global).

Counters count events in this process; the queue gauges are read from PostgreSQL when
scraped (at most every few seconds: bgchallenge.web.app), so they are the same whichever
process is scraped.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Database calls answer in milliseconds: fine buckets there, so that a p99 can be read off.
DATABASE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1, 5,
)  # fmt: skip
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.enqueued = Counter("bgc_results_enqueued", "Results accepted by enqueue.", registry=r)
        self.duplicates = Counter(
            "bgc_results_duplicate", "Enqueue requests refused as duplicates (409).", registry=r
        )
        self.succeeded = Counter("bgc_results_succeeded", "Results stored.", registry=r)
        self.failed = Counter(
            "bgc_results_failed", "Results failed, by error code.", ["code"], registry=r
        )
        self.canceled = Counter(
            "bgc_results_canceled", "Running attempts stopped by a cancel.", registry=r
        )
        self.attempts = Counter("bgc_attempts", "Attempts started.", registry=r)
        self.retries = Counter(
            "bgc_retries", "Retries scheduled, by the transient error code.", ["code"], registry=r
        )
        self.handed_back = Counter(
            "bgc_attempts_handed_back", "Attempts handed back by a shutdown.", registry=r
        )
        self.outcomes_not_recorded = Counter(
            "bgc_outcomes_not_recorded",
            "Attempt outcomes the database did not take: the attempt was no longer this "
            "worker's, or the database did not answer.",
            registry=r,
        )
        self.bytes_stored = Counter("bgc_stored_bytes", "Bytes written to the bucket.", registry=r)
        self.download_seconds = Histogram(
            "bgc_download_seconds",
            "From the HEAD request to the body's last byte.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            "bgc_upload_seconds",
            "S3 calls, by operation.",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.database_seconds = Histogram(
            "bgc_worker_database_seconds",
            "The workers' database calls, by operation: claim (due results claimed), outcome "
            "(an attempt's outcome recorded), lease (a lease renewal with its progress).",
            ["operation"],
            buckets=DATABASE_BUCKETS,
            registry=r,
        )
        self.leases_expired = Counter(
            "bgc_leases_expired", "Results taken back from a dead worker process.", registry=r
        )
        self.listener_reconnects = Counter(
            "bgc_listener_reconnects", "LISTEN connections re-established.", registry=r
        )
        self.callbacks = Counter(
            "bgc_callbacks",
            "Completion callback attempts, by outcome: delivered, retried (a retry is "
            "scheduled), failed (no attempt left).",
            ["outcome"],
            registry=r,
        )
        self.workers = Gauge("bgc_workers", "Download workers in this process.", registry=r)
        self.workers_busy = Gauge(
            "bgc_workers_busy", "Workers running an attempt in this process.", registry=r
        )
        self.queue = Gauge(
            "bgc_queue",
            "Results by state (from the database, read at most every 5 s): "
            "queued, due (queued and due now), running.",
            ["state"],
            registry=r,
        )

    def render(self, queue: dict[str, int] | None) -> bytes:
        """The exposition text; ``queue`` None when the database did not answer."""
        for state in ("queued", "due", "running"):
            self.queue.labels(state).set(queue[state] if queue else float("nan"))
        return generate_latest(self.registry)
