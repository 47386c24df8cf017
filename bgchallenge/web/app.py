"""The quart-trio application: routes only; everything they need is passed in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from bgchallenge.db.batching import Batcher
from bgchallenge.db.database import DatabaseUnavailable
from bgchallenge.db.repository import Enqueued, Results
from bgchallenge.domain.enqueue import EnqueueRequest, InvalidBody, NotAnObject
from bgchallenge.domain.listing import (
    InvalidQuery,
    Snapshot,
    encode_cursor,
    etag_snapshots,
    if_none_match_matches,
    list_etag,
    parse_list_query,
)
from bgchallenge.domain.stream import decode_stream_position, parse_stream_query
from bgchallenge.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bgchallenge.metrics import Metrics
from bgchallenge.storage.s3 import Storage
from bgchallenge.web import routes
from bgchallenge.web.docs import register_docs
from bgchallenge.web.filters import check_body, check_signature, raw_body, receive_body
from bgchallenge.web.problems import invalid, json_response, not_modified, problem
from bgchallenge.web.recent import Recent
from bgchallenge.web.routes import HEALTH_MAX_AGE_SECONDS as HEALTH_MAX_AGE_SECONDS
from bgchallenge.web.routes import HEALTH_TIMEOUT_SECONDS as HEALTH_TIMEOUT_SECONDS
from bgchallenge.web.routes import MAX_BODY_BYTES
from bgchallenge.web.schema import (
    DuplicateProblem,
    Health,
    HealthProblem,
    ResultPage,
    decode_enqueue,
    result_body,
)
from bgchallenge.web.stream import StreamHub, StreamsFull

log = logging.getLogger(__name__)

# /metrics reads the queue depth (a count over the queue) at most this often: on demand, so a
# process nobody scrapes runs no count, and a scrape after a quiet spell gets a fresh value.
QUEUE_DEPTH_MAX_AGE_SECONDS = 5.0


@dataclass(frozen=True)
class WebDependencies:
    results: Results
    storage: Storage
    signing_secret: str | None
    cursor_key: bytes
    metrics: Metrics
    enqueue: Batcher[EnqueueRequest, Enqueued]
    unchanged_since: Batcher[tuple[str | None, Snapshot], bool]
    serve_api: bool = True  # False: only the operations routes (a worker process)
    callbacks: bool = False  # whether enqueue accepts a callbackUrl (BGC_WEBHOOK_SECRET is set)
    streams: StreamHub | None = None  # GET /results/stream (the API's processes)


def create_app(deps: WebDependencies) -> QuartTrio:
    app = QuartTrio("bgchallenge", static_folder=None)  # docs.py serves /docs's files
    app.config["MAX_CONTENT_LENGTH"] = None  # `screen` enforces MAX_BODY_BYTES, after signing
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    @app.before_request
    async def screen() -> Response | None:
        """Read the body first (see `receive_body`: answering before it has arrived hangs a
        kept-alive connection), then check the signature, then the body's limits: reading
        is not parsing, and an unsigned request gets 401 whatever its body."""
        body = await receive_body(MAX_BODY_BYTES)
        if deps.signing_secret is not None:
            refused = check_signature(deps.signing_secret, body)
            if refused is not None:
                return refused
        return check_body(body, MAX_BODY_BYTES)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        headers = {}
        if code == 405 and error.get_headers():
            headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
        detail = {
            404: "no such resource",
            413: f"the body is larger than {MAX_BODY_BYTES} bytes",
        }.get(code, error.description or "")
        return problem(code, detail, headers=headers)

    @app.errorhandler(DatabaseUnavailable)
    async def database_down(error: DatabaseUnavailable) -> Response:
        log.warning("database unavailable: %s", error)
        return problem(
            503,
            "the database is unavailable; try again",
            kind="unavailable",
            headers={"Retry-After": "1"},
        )

    async def check_parts() -> dict[str, Any]:  # part: "ok" or what is wrong
        parts = {"database": deps.results.ping, "storage": deps.storage.check_bucket}
        states: dict[str, Any] = {}

        async def check(name: str) -> None:
            try:
                with trio.fail_after(HEALTH_TIMEOUT_SECONDS):
                    await parts[name]()
                states[name] = "ok"
            except trio.TooSlowError:
                states[name] = f"no answer within {HEALTH_TIMEOUT_SECONDS:g} s"
            except Exception as exc:  # any failure of the part is its state, reported
                states[name] = f"unavailable: {exc}"

        async with trio.open_nursery() as nursery:
            for name in parts:
                nursery.start_soon(check, name)
        return {name: states[name] for name in parts}

    async def read_queue_depth() -> dict[str, int] | None:
        try:
            with trio.fail_after(HEALTH_TIMEOUT_SECONDS):
                return await deps.results.queue_depth()
        except (DatabaseUnavailable, trio.TooSlowError):
            return None

    # Both routes are unauthenticated: a flood of them shares one backend check at a time.
    recent_health = Recent(check_parts, HEALTH_MAX_AGE_SECONDS)
    recent_queue_depth = Recent(read_queue_depth, QUEUE_DEPTH_MAX_AGE_SECONDS)

    @app.route(routes.HEALTH.rule, methods=[routes.HEALTH.method])
    async def health() -> Response:
        states = await recent_health()
        failing = [name for name, state in states.items() if state != "ok"]
        if failing:
            return problem(
                503,
                f"{' and '.join(failing)} not answering",
                kind="unhealthy",
                shape=HealthProblem,
                **states,
            )
        return json_response(Health(status="ok", **states))

    @app.route(routes.METRICS.rule, methods=[routes.METRICS.method])
    async def metrics() -> Response:
        queue = await recent_queue_depth()
        return Response(deps.metrics.render(queue), content_type=METRICS_CONTENT_TYPE)

    register_docs(app)
    if deps.serve_api:
        _add_api_routes(app, deps)
    return app


def _add_api_routes(app: QuartTrio, deps: WebDependencies) -> None:
    @app.route(routes.ENQUEUE.rule, methods=[routes.ENQUEUE.method])
    async def enqueue() -> Response:
        if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
            return problem(
                415,
                "the body must be JSON (Content-Type: application/json)",
                kind="unsupported-media-type",
            )
        raw = raw_body()
        try:
            parsed = decode_enqueue(raw, now=datetime.now(UTC), callbacks=deps.callbacks)
        except NotAnObject as exc:
            return problem(400, str(exc), kind="single-object-required")
        except InvalidBody as exc:
            return invalid("the body is not a valid enqueue request", "invalid-body", exc.problems)
        outcome = await deps.enqueue(parsed)
        result = outcome.result
        if not outcome.created:
            deps.metrics.duplicates.inc()
            return problem(
                409,
                f"job {result.job_id!r} already has a result for this object",
                kind="duplicate",
                shape=DuplicateProblem,
                existing_id=result.id,
                headers={"Location": f"/results/{result.id}"},
            )
        deps.metrics.enqueued.inc()
        log.info("enqueued", extra={"id": result.id, "jobId": result.job_id, "url": result.url})
        return json_response(
            result_body(result), 202, headers={"Location": f"/results/{result.id}"}
        )

    @app.route(routes.LIST.rule, methods=[routes.LIST.method])
    async def list_results() -> Response:
        try:
            query = parse_list_query(request.args.to_dict(flat=False), deps.cursor_key)
        except InvalidQuery as exc:
            return invalid("the query is not a valid list request", "invalid-query", exc.problems)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:
            # The cheap check first: a few index probes, no page. Our own ETags only (a few:
            # each costs a check); anything else cannot match.
            for etag, snapshot in etag_snapshots(deps.cursor_key, query, if_none_match)[:4]:
                if await deps.unchanged_since((query.job_id, snapshot)):
                    return not_modified(etag)
        page = await deps.results.list_page(query)
        etag = list_etag(deps.cursor_key, query, page.snapshot)
        if if_none_match_matches(if_none_match, etag):
            return not_modified(etag)
        next_cursor = (
            encode_cursor(deps.cursor_key, query, page.results[-1].id) if page.more else None
        )
        body = ResultPage([result_body(r) for r in page.results], next_cursor)
        return json_response(body, headers={"ETag": etag, "Cache-Control": "no-cache"})

    @app.route(routes.STREAM.rule, methods=[routes.STREAM.method])
    async def stream() -> Response:
        try:
            job_id = parse_stream_query(request.args.to_dict(flat=False))
        except InvalidQuery as exc:
            return invalid("the query is not a valid stream request", "invalid-query", exc.problems)
        last_event_id = request.headers.get("Last-Event-ID", "").strip()
        resume = None
        if last_event_id:
            resume = decode_stream_position(deps.cursor_key, job_id, last_event_id)
            if resume is None:
                return problem(
                    400,
                    "Last-Event-ID is not a position this service issued for this stream",
                    kind="invalid-position",
                )
        assert deps.streams is not None, "the API's processes serve streams"
        try:
            deps.streams.check_room()
        except StreamsFull:
            return problem(
                503,
                "too many open streams; try again",
                kind="unavailable",
                headers={"Retry-After": "5"},
            )
        response = Response(
            deps.streams.events(job_id, resume),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a stream after 60 s
        return response

    @app.route(routes.CANCEL.rule, methods=[routes.CANCEL.method])
    async def cancel(result_id: int) -> Response:
        outcome = await deps.results.cancel(result_id)
        if outcome is None:
            return problem(404, f"no result with id {result_id}", kind="not-found")
        if outcome.requested:
            log.info("cancel requested", extra={"id": result_id, "jobId": outcome.result.job_id})
        return json_response(result_body(outcome.result), 202 if outcome.requested else 200)

    @app.route(routes.RESULT.rule, methods=[routes.RESULT.method])
    async def get_result(result_id: int) -> Response:
        result = await deps.results.get(result_id)
        if result is None:
            return problem(404, f"no result with id {result_id}", kind="not-found")
        return json_response(result_body(result))
