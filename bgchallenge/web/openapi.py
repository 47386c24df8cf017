"""The OpenAPI 3.1 document of the HTTP API (``GET /openapi.json``, shown by ``GET /docs``).

Its operations are `bgchallenge.web.routes`'s (the app routes exactly those), its schemas are
the declarations of `bgchallenge.web.schema` (which validate and encode the bodies), and the
numbers it quotes are the constants the validation uses, so none of them can drift apart.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bgchallenge.domain.callbacks import CALLBACK_TIMEOUT_SECONDS
from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH
from bgchallenge.domain.listing import CURSOR_LENGTH, DEFAULT_LIMIT, MAX_LIMIT
from bgchallenge.domain.paths import MAX_URL_LENGTH
from bgchallenge.domain.signing import MAX_AGE_SECONDS, SIGNATURE_PREFIX
from bgchallenge.web import routes
from bgchallenge.web.filters import SIGNED_PREFIX
from bgchallenge.web.problems import PROBLEM_JSON
from bgchallenge.web.routes import (
    HEALTH_MAX_AGE_SECONDS,
    HEALTH_TIMEOUT_SECONDS,
    MAX_BODY_BYTES,
    MAX_RESULT_ID,
    Operation,
)
from bgchallenge.web.schema import NO_NUL, components

JSON = "application/json"
# base64url without padding, as the service writes cursors and positions
BASE64URL = "^[A-Za-z0-9_-]+$"
# a stream's event id: a position, or a position, a writer, a result id and a position
STREAM_POSITION = r"^\s*([A-Za-z0-9_-]+(\.[0-9]+\.[0-9]+\.[A-Za-z0-9_-]+)?)?\s*$"

Schema = dict[str, Any]

RETRY_AFTER: Schema = {
    "Retry-After": {
        "required": True,
        "description": "seconds",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

# The filter that /results/list and /results/stream share.
_JOB_ID_PARAMETER: Schema = {
    "name": "jobId",
    "in": "query",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_JOB_ID_LENGTH, "pattern": NO_NUL},
    "description": "only this job's results",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _response_ref(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: Schema, description: str, **extra: Any) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _problem(schema_name: str, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref(schema_name)}},
        **extra,
    }


def _problem_with(members: Schema, required: list[str]) -> Schema:
    return {
        "allOf": [_ref("Problem"), {"type": "object", "properties": members, "required": required}]
    }


def _schemas() -> dict[str, Schema]:
    schemas = components()
    schemas["EnqueueRejected"] = {
        "description": "Either the single-object guard (no `errors`: the body is JSON but "
        "not one object) or a ValidationProblem listing each field problem.",
        "anyOf": [_ref("ValidationProblem"), _ref("Problem")],
    }
    return schemas


def _security_schemes() -> dict[str, Schema]:
    when = (
        f"Required on every `{SIGNED_PREFIX}*` request when the service runs with "
        "`BGC_SIGNING_SECRET` set (otherwise signing is off and both headers are ignored). "
    )
    return {
        "bgcTimestamp": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Bgc-Timestamp",
            "description": when + "Unix seconds; refused when more than "
            f"{MAX_AGE_SECONDS} s from the server's clock.",
        },
        "bgcSignature": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Bgc-Signature",
            "description": when
            + f"`{SIGNATURE_PREFIX}<hex HMAC-SHA256>` keyed with the secret, of the canonical "
            "string `<timestamp>\\n<METHOD>\\n<target>\\n<hex SHA-256 of the raw body>` (four "
            "fields joined by line feeds; target is the request target as sent, query string "
            "included; no body: the SHA-256 of the empty string). Checked before the body is "
            "parsed, so an unsigned request gets 401 whatever its body, even a too large one.",
        },
    }


def _responses() -> dict[str, Schema]:
    return {
        "Unsigned": _problem(
            "Problem",
            "Signing is on and the signature is missing, wrong, or the timestamp is stale.",
            headers={
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "const": "Bgc-HMAC-SHA256"},
                }
            },
        ),
        "DatabaseUnavailable": _problem(
            "Problem",
            "PostgreSQL is not answering; try again.",
            headers=RETRY_AFTER,
        ),
        "NotFound": _problem("Problem", "No result with this id."),
        "TooLarge": _problem(
            "Problem",
            f"The body is larger than {MAX_BODY_BYTES} bytes (when signing is on, only once "
            "the signature has been checked: an unsigned request gets 401).",
        ),
    }


def _id_parameter() -> Schema:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_RESULT_ID},
        "description": "the result's id",
    }


def _etag_header(required: bool) -> Schema:
    return {
        "required": required,
        "description": "a strong ETag for exactly this query (filters, limit and cursor); it "
        "changes whenever a result the query could return is inserted or changes",
        "schema": {"type": "string", "pattern": '^"[^"]+"$'},
    }


def _result_operations() -> dict[Operation, Schema]:
    location = {
        "required": True,
        "description": "/results/{id}",
        "schema": {"type": "string", "pattern": "^/results/[0-9]+$"},
    }
    cache_control = {"schema": {"type": "string", "const": "no-cache"}}
    return {
        routes.ENQUEUE: {
            "summary": "Ask for one remote image to be copied into the bucket",
            "description": "The row is inserted and workers notified in one transaction. "
            "A result is identified by (jobId, host, objectPath): the query string and "
            "fragment never count, so two presignings of one object are one result.",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("EnqueueRequest")}},
            },
            "responses": {
                "202": _json(
                    _ref("Result"),
                    "Accepted: the new result, status `queued`.",
                    headers={"Location": location},
                ),
                "400": _problem(
                    "EnqueueRejected",
                    "Not a single JSON object (`detail` says so), or malformed JSON, a "
                    "missing, empty, over-long or unknown member, or a URL that is not an "
                    f"absolute http(s) URL of at most {MAX_URL_LENGTH} characters, or a "
                    "presigned URL already expired (`errors` lists each). Nothing is stored.",
                ),
                "409": _problem(
                    "DuplicateProblem",
                    "This job already has a result for this host and objectPath; "
                    "`existingId` names it. Nothing changes.",
                    headers={"Location": location},
                ),
                "413": _response_ref("TooLarge"),
                "415": _problem("Problem", "The Content-Type is not JSON."),
            },
        },
        routes.LIST: {
            "summary": "List results in id order, a page at a time",
            "description": "A page walk sees every result that existed when it started "
            "exactly once. Send the ETag back in If-None-Match to get 304 while nothing "
            "the query could return has changed.",
            "parameters": [
                _JOB_ID_PARAMETER,
                {
                    "name": "status",
                    "in": "query",
                    "style": "form",
                    "explode": True,
                    "schema": {"type": "array", "items": _ref("Status")},
                    "description": "only results in one of these states (repeatable)",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                    "description": "page size",
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {
                        "type": "string",
                        "pattern": BASE64URL,
                        "minLength": CURSOR_LENGTH,
                        "maxLength": CURSOR_LENGTH,
                    },
                    "description": "opaque, from `nextCursor`; only valid with the same "
                    "jobId and status filters",
                },
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "schema": {"type": "string"},
                    "description": "ETags from earlier answers (a list, weak comparison: "
                    '`W/"…"` matches), or `*`',
                },
            ],
            "responses": {
                "200": _json(
                    _ref("ResultPage"),
                    "A page of results.",
                    headers={"ETag": _etag_header(True), "Cache-Control": cache_control},
                ),
                "304": {
                    "description": "If-None-Match matches the current ETag: no body.",
                    "headers": {"ETag": _etag_header(True), "Cache-Control": cache_control},
                },
                "400": _problem(
                    "ValidationProblem",
                    f"A limit outside 1 to {MAX_LIMIT}, an unknown status, a jobId that is "
                    "empty or too long, a cursor the service did not issue for these "
                    "filters, a repeated jobId/limit/cursor or an unknown parameter.",
                ),
            },
        },
        routes.STREAM: {
            "summary": "Follow results live (Server-Sent Events)",
            "description": "`event: ready` first (`id:` the current position, `data: {}`), "
            "then one `event: result` per committed change of a matching result, in commit "
            "order: `id:` its position (opaque), `data:` the result as `GET /results/{id}` "
            "renders it. A comment `: keep-alive` at least every 15 s. With "
            "`Last-Event-ID`, the current state of every matching result changed since "
            "that position comes first, then live events: nothing missed, nothing twice "
            "(intermediate states may be folded into the latest). A reader that falls "
            "too far behind is disconnected and resumes with `Last-Event-ID`; a graceful "
            "shutdown ends the stream.",
            "parameters": [
                _JOB_ID_PARAMETER,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "schema": {"type": "string"},
                    "description": "the `id:` of the last event received on a stream "
                    "with the same jobId: resume after it",
                },
            ],
            "responses": {
                "200": {
                    "description": "The stream (it does not end until the client leaves, "
                    "the service shuts down, or the reader falls behind).",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    "headers": {"Cache-Control": cache_control},
                },
                "400": _problem(
                    "Problem",
                    "A jobId that is empty or too long, a repeated jobId or an unknown "
                    "parameter (with `errors`, as a ValidationProblem), or a Last-Event-ID "
                    "that is not a position this service issued for a stream with the same "
                    "jobId.",
                ),
                "503": _problem(
                    "Problem",
                    "The process has BGC_STREAM_MAX streams open already (or is shutting "
                    "down), or PostgreSQL is not answering; try again.",
                    headers=RETRY_AFTER,
                ),
            },
        },
        routes.RESULT: {
            "summary": "Read one result",
            "parameters": [_id_parameter()],
            "responses": {
                "200": _json(_ref("Result"), "The result."),
                "404": _response_ref("NotFound"),
            },
        },
        routes.CANCEL: {
            "summary": "Cancel a result",
            "description": "Queued: canceled at once (200). Running: the attempt is "
            "stopped promptly, its upload aborted, then the result becomes canceled "
            "(202, still running). Terminal: unchanged (200), idempotent.",
            "parameters": [_id_parameter()],
            "responses": {
                "200": _json(_ref("Result"), "Canceled now (was queued), or unchanged."),
                "202": _json(_ref("Result"), "Running: being stopped; still `running`."),
                "404": _response_ref("NotFound"),
                "413": _response_ref("TooLarge"),
            },
        },
    }


def _operations_surface() -> dict[Operation, Schema]:
    text = {"schema": {"type": "string"}}
    return {
        routes.HEALTH: {
            "summary": "Whether PostgreSQL and the bucket answer",
            "description": "Each part must answer within "
            f"{HEALTH_TIMEOUT_SECONDS:g} s. The answer comes from a check at most "
            f"{HEALTH_MAX_AGE_SECONDS:g} s old, shared by concurrent requests. "
            "Never requires a signature.",
            "responses": {
                "200": _json(_ref("Health"), "Both answer."),
                "503": _problem(
                    "HealthProblem",
                    "A part is not answering; `database` and `storage` say `ok` or why not.",
                ),
            },
        },
        routes.METRICS: {
            "summary": "Prometheus metrics of this process",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": text},
                }
            },
        },
        routes.OPENAPI: {
            "summary": "This document",
            "responses": {
                "200": _json({"type": "object"}, "The OpenAPI 3.1 document."),
            },
        },
        routes.DOCS: {
            "summary": "This document as a page for people",
            "responses": {"200": {"description": "HTML.", "content": {"text/html": text}}},
        },
    }


def _webhooks() -> dict[str, Schema]:
    """The completion callback: what the service POSTs to a result's callbackUrl."""
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    return {
        "resultCompleted": {
            "post": {
                "operationId": "resultCompleted",
                "summary": "A result is terminal: its JSON, POSTed to its callbackUrl",
                "description": "Sent when the service has BGC_WEBHOOK_SECRET set and the "
                "enqueue body gave a callbackUrl; signed as the Standard Webhooks specification "
                "says, so a receiver verifies with `Webhook(secret).verify(body, headers)` "
                "(package `standardwebhooks`) and deduplicates on `webhook-id` (delivery is at "
                "least once). A 2xx answer is delivery; anything else, no answer within "
                f"{CALLBACK_TIMEOUT_SECONDS:g} s or no connection is retried after "
                "BGC_CALLBACK_DELAYS; the result's `callback` member shows how it went.",
                "parameters": [
                    {
                        "name": "webhook-id",
                        **header,
                        "description": "the same on every attempt for one result",
                    },
                    {"name": "webhook-timestamp", **header, "description": "Unix seconds"},
                    {
                        "name": "webhook-signature",
                        **header,
                        "description": "`v1,<base64 HMAC-SHA256>` of "
                        "`<webhook-id>.<webhook-timestamp>.<body>`",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("Result")}},
                },
                "responses": {
                    "2XX": {"description": "Delivered."},
                    "default": {"description": "Not delivered: tried again later."},
                },
            }
        }
    }


_SIGNING_HOWTO = (
    "\n\n**Signing.** With `BGC_SIGNING_SECRET` set, every "
    f"`{SIGNED_PREFIX}*` request carries `X-Bgc-Timestamp: <unix seconds>` (at most "
    f"{MAX_AGE_SECONDS} s from the service's clock) and `X-Bgc-Signature: "
    f"{SIGNATURE_PREFIX}<hex HMAC-SHA256>`, keyed with the secret, of "
    "`<timestamp>\\n<METHOD>\\n<target>\\n<hex SHA-256 of the raw body>` (the target as "
    "sent, query string included; see the `bgcTimestamp` and `bgcSignature` schemes)."
    "\n\n**Try it out** sends its requests to this service and works as it is when signing is "
    "off. With signing on, a signature is good for one exact request: compute both headers for "
    "the request you are about to send, enter them under **Authorize**, and send it within "
    f"{MAX_AGE_SECONDS // 60} minutes; or use a client that signs (`bgchallenge submit`)."
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the service has, as plain data."""
    described = {**_operations_surface(), **_result_operations()}
    assert set(described) == set(routes.ALL), "every operation is described, once"
    paths: dict[str, dict[str, Schema]] = {}
    for route in routes.ALL:
        operation = {"operationId": route.operation_id, **described[route]}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    signed: list[dict[str, list[str]]] = [{"bgcTimestamp": [], "bgcSignature": []}, {}]
    for path, operations in paths.items():
        for operation in operations.values():
            if path.startswith(SIGNED_PREFIX):
                # Whatever the route, the sign-here filter (when on) and the database can refuse.
                operation["security"] = signed
                operation["responses"]["401"] = _response_ref("Unsigned")
                operation["responses"].setdefault("503", _response_ref("DatabaseUnavailable"))
            else:
                operation["security"] = []
            operation["responses"] = dict(sorted(operation["responses"].items()))
    try:
        service_version = version("bgchallenge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        service_version = "0+unknown"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bgchallenge",
            "version": service_version,
            "summary": "Copies remote images into object storage, reliably and in the background.",
            "description": "Every error is `application/problem+json` (RFC 9457). Timestamps "
            "are RFC 3339 in UTC with milliseconds. Requests to "
            f"`{SIGNED_PREFIX}*` must be signed when the service has a signing secret. "
            "A GET or HEAD request with a body is refused with 400, on every path. "
            "The API behaves the same whichever transport carries the work (the server's "
            "`BGC_QUEUE` setting: `postgres`, `sqs` or `rabbitmq`)." + _SIGNING_HOWTO,
        },
        # Relative: the service that serves this document (so "Try it out" asks it).
        "servers": [{"url": "/", "description": "this service"}],
        "paths": dict(sorted(paths.items())),
        "webhooks": _webhooks(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": _security_schemes(),
        },
    }
