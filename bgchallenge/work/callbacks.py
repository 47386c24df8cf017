"""The completion callbacks' delivery task (one per worker-role process).

Claims due deliveries from the outbox (migration 0009), POSTs each result's JSON as
GET /results/{id} shows it, read after the terminal state, signed by the `standardwebhooks`
package, through the fetcher's address guard. Its error messages name no address the service
resolved, as the fetcher's do; the detail goes to the service's own log.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from math import floor

import httpx
import trio
from standardwebhooks import Webhook

from bgchallenge.db.database import Database, DatabaseUnavailable
from bgchallenge.db.repository import Deliveries, Results
from bgchallenge.domain.callbacks import (
    CALLBACK_TIMEOUT_SECONDS,
    Delivery,
    answer_error,
    max_callback_attempts,
    retry_delay,
)
from bgchallenge.domain.network import AddressGuard
from bgchallenge.metrics import Metrics
from bgchallenge.settings import Settings
from bgchallenge.web.schema import result_json
from bgchallenge.work.fetch import BLOCKED_MESSAGE, BlockedAddress, guarded_transport

log = logging.getLogger(__name__)

BATCH = 10
# How often an idle task looks for due deliveries (a terminal state makes one due at once).
IDLE_SECONDS = 0.5
CONNECT_FAILED_MESSAGE = "could not connect to the callback URL"
# A shutdown's hand-back of an interrupted attempt is bounded; past it, the lease runs out.
HAND_BACK_SECONDS = 2.0


class Sender:
    """Signs and POSTs one delivery; answers None when delivered, else the error to record."""

    def __init__(self, guard: AddressGuard, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.client = httpx.AsyncClient(
            transport=guarded_transport(guard),
            timeout=CALLBACK_TIMEOUT_SECONDS,
            follow_redirects=False,
            headers={"User-Agent": "bgchallenge/0.1"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, delivery: Delivery, body: str) -> str | None:
        now = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(floor(now.timestamp())),
            "webhook-signature": self.webhook.sign(delivery.message_id, now, body),
        }
        fields = {"id": delivery.result_id, "jobId": delivery.job_id, "attempt": delivery.attempt}
        try:
            response = await self.client.post(
                delivery.target, content=body.encode(), headers=headers
            )
        except BlockedAddress as exc:
            log.warning("callback address refused", extra={**fields, "detail": str(exc)})
            return BLOCKED_MESSAGE
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            log.info("callback connection failed", extra={**fields, "detail": detail})
            return CONNECT_FAILED_MESSAGE
        except httpx.TimeoutException:
            return f"no answer within {CALLBACK_TIMEOUT_SECONDS:g} s"
        except httpx.HTTPError as exc:
            # the exception's text may name an address: only its kind is recorded
            log.info("callback failed", extra={**fields, "detail": f"{type(exc).__name__}: {exc}"})
            return f"the request failed ({type(exc).__name__})"
        return answer_error(response.status_code)


async def serve_callbacks(
    database: Database,
    settings: Settings,
    metrics: Metrics,
    owner: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    assert settings.webhook_secret is not None
    sender = Sender(AddressGuard(settings.allow_networks), settings.webhook_secret)
    # The lease covers the request's timeout and the outcome's write.
    deliveries = Deliveries(database, owner, CALLBACK_TIMEOUT_SECONDS + settings.lease_seconds)
    results = Results(database)
    limit = max_callback_attempts(settings.callback_delays)
    try:
        task_status.started()
        while True:
            try:
                held, spent = await deliveries.claim(BATCH, limit)
            except DatabaseUnavailable:
                held, spent = [], []
            for row in spent:
                metrics.callbacks.labels("failed").inc()
                log.warning(
                    "callback failed",
                    extra={"id": row["id"], "jobId": row["job_id"], "reason": "lease expired"},
                )
            if held:
                async with trio.open_nursery() as nursery:
                    for delivery in held:
                        nursery.start_soon(
                            _deliver, deliveries, results, sender, settings, metrics, delivery
                        )
                continue
            try:
                wait = await deliveries.seconds_until_next()
            except DatabaseUnavailable:
                wait = None
            await trio.sleep(IDLE_SECONDS if wait is None else min(wait, IDLE_SECONDS))
    finally:
        with trio.CancelScope(shield=True):
            await sender.aclose()


async def _deliver(
    deliveries: Deliveries,
    results: Results,
    sender: Sender,
    settings: Settings,
    metrics: Metrics,
    delivery: Delivery,
) -> None:
    """One attempt. Should the database fail meanwhile, the lease expires and another
    attempt follows: delivery is at least once."""
    fields = {"id": delivery.result_id, "jobId": delivery.job_id, "attempt": delivery.attempt}
    recorded = False
    try:
        result = await results.get(delivery.result_id)
        assert result is not None, "a result with a callback is never deleted"
        error = await sender.send(delivery, result_json(result).decode())
        if error is None:
            delivered = await deliveries.delivered(delivery)
            recorded = True
            if delivered:
                metrics.callbacks.labels("delivered").inc()
                log.info("callback delivered", extra=fields)
            return
        delay = retry_delay(delivery.attempt, settings.callback_delays)
        status = await deliveries.not_delivered(delivery, error, delay)
        recorded = True
    except DatabaseUnavailable as exc:
        recorded = True  # nothing to hand back with: the lease runs out instead
        log.warning("callback outcome not recorded", extra={**fields, "error": str(exc)})
        return
    finally:
        if not recorded:  # a shutdown (or a bug) interrupted the attempt
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(HAND_BACK_SECONDS),
                contextlib.suppress(DatabaseUnavailable),
            ):
                await deliveries.hand_back(delivery)
    if status == "pending":
        metrics.callbacks.labels("retried").inc()
        log.info("callback retry scheduled", extra={**fields, "error": error, "delay": delay})
    elif status == "failed":
        metrics.callbacks.labels("failed").inc()
        log.warning("callback failed", extra={**fields, "error": error})
