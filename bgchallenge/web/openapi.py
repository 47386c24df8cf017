"""The OpenAPI 3.1 document of the HTTP API (``GET /openapi.json``), and the routes serving it
and the page for people (``GET /docs``, rendered by `bgchallenge.web.docs`).

The document is plain data built from the constants the validation uses (lengths, limits, the
status enum, the error codes, the signed path prefix), so the two cannot drift apart.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from quart import Quart, Response

from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH
from bgchallenge.domain.failures import EXHAUSTED, PERMANENT_CODES, TRANSIENT_CODES
from bgchallenge.domain.listing import DEFAULT_LIMIT, MAX_LIMIT
from bgchallenge.domain.paths import MAX_URL_LENGTH
from bgchallenge.domain.results import Status
from bgchallenge.domain.signing import MAX_AGE_SECONDS, SIGNATURE_PREFIX
from bgchallenge.web.docs import DOCS_PATH, OPENAPI_PATH, render_docs
from bgchallenge.web.filters import SIGNED_PREFIX
from bgchallenge.web.problems import PROBLEM_BASE, PROBLEM_JSON

JSON = "application/json"
# /docs loads nothing from anywhere: inline styles only.
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'"

Schema = dict[str, Any]

# The filter that /results/list and /results/stream share.
_JOB_ID_PARAMETER: Schema = {
    "name": "jobId",
    "in": "query",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_JOB_ID_LENGTH},
    "description": "only this job's results",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _response_ref(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _timestamp(description: str) -> Schema:
    return {"type": "string", "format": "date-time", "description": description}


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
    error_codes = sorted(PERMANENT_CODES | TRANSIENT_CODES | {EXHAUSTED})
    return {
        "Status": {
            "type": "string",
            "enum": [status.value for status in Status],
            "description": "Terminal states: succeeded, failed, canceled; a terminal result "
            "never changes again.",
        },
        "ResultError": {
            "type": "object",
            "description": "The last error of a result.",
            "properties": {
                "code": {
                    "type": "string",
                    "enum": error_codes,
                    "description": "Permanent (no retry): "
                    + ", ".join(sorted(PERMANENT_CODES))
                    + ". Transient (retried): "
                    + ", ".join(sorted(TRANSIENT_CODES))
                    + f". {EXHAUSTED}: the last transient error, after the final attempt.",
                },
                "message": {"type": "string"},
            },
            "required": ["code", "message"],
            "additionalProperties": False,
        },
        "StoredObject": {
            "type": "object",
            "description": "Where a succeeded result's bytes are stored.",
            "properties": {
                "bucket": {"type": "string"},
                "key": {"type": "string", "description": "results/<id>/<file name>"},
                "size": {"type": "integer", "minimum": 0, "description": "bytes"},
                "contentType": {
                    "type": "string",
                    "description": "the type the bytes themselves show, which the object is "
                    "stored with: image/png, image/jpeg, image/gif, image/webp, image/bmp, "
                    "image/tiff, image/vnd.microsoft.icon, image/avif, image/heic, image/heif, "
                    "image/heif-sequence or image/svg+xml",
                },
                "declaredContentType": {
                    "type": ["string", "null"],
                    "description": "what the origin's Content-Type said; null for a result "
                    "stored before the service recorded it",
                },
                "sha256": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": "hex SHA-256 of the stored bytes",
                },
            },
            "required": [
                "bucket",
                "key",
                "size",
                "contentType",
                "declaredContentType",
                "sha256",
            ],
            "additionalProperties": False,
        },
        "Result": {
            "type": "object",
            "description": "One remote image the service was asked to copy into object storage.",
            "properties": {
                "id": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1,
                    "description": "assigned by the service, increasing",
                },
                "jobId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_JOB_ID_LENGTH,
                    "description": "the client's job this result belongs to",
                },
                "url": {
                    "type": "string",
                    "description": "the source URL without its query string and fragment "
                    "(a presigned URL's query is a credential: it is never shown)",
                },
                "objectPath": {
                    "type": "string",
                    "pattern": "^/",
                    "description": "the URL's path normalised as RFC 3986 §6.2.2 says; "
                    "(jobId, host, objectPath) identify a result",
                },
                "status": _ref("Status"),
                "attempts": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "attempts started so far, less any handed back by a "
                    "graceful shutdown",
                },
                "error": {
                    "oneOf": [_ref("ResultError"), {"type": "null"}],
                    "description": "the last error, or null",
                },
                "storage": {
                    "oneOf": [_ref("StoredObject"), {"type": "null"}],
                    "description": "where the bytes are, after success; otherwise null",
                },
                "createdAt": _timestamp("RFC 3339, UTC, milliseconds"),
                "updatedAt": _timestamp("RFC 3339, UTC, milliseconds"),
                "startedAt": _nullable(_timestamp("when the first attempt started")),
                "endedAt": _nullable(_timestamp("when it became succeeded, failed or canceled")),
                "canceledAt": _nullable(_timestamp("when it was canceled")),
                "durationMs": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "endedAt - startedAt in milliseconds; null until both exist",
                },
                "urlExpiresAt": _nullable(
                    _timestamp(
                        "when the presigned source URL expires, read from its query at enqueue "
                        "(AWS SigV4/SigV2, CloudFront, Google, Azure SAS); null when it names none"
                    )
                ),
                "progress": {
                    "oneOf": [_ref("Progress"), {"type": "null"}],
                    "description": "the download of the current (or last) attempt; null before "
                    "its first byte arrives",
                },
                "callback": {
                    "oneOf": [_ref("Callback"), {"type": "null"}],
                    "description": "the completion callback, when a callbackUrl was given",
                },
            },
            "required": [
                "id",
                "jobId",
                "url",
                "objectPath",
                "status",
                "attempts",
                "error",
                "storage",
                "createdAt",
                "updatedAt",
                "startedAt",
                "endedAt",
                "canceledAt",
                "durationMs",
                "urlExpiresAt",
                "progress",
                "callback",
            ],
            "additionalProperties": False,
        },
        "Callback": {
            "type": "object",
            "description": "The POST of the result's JSON to callbackUrl once it is terminal, "
            "signed as Standard Webhooks says (webhook-id, webhook-timestamp, "
            "webhook-signature); retried after BGC_CALLBACK_DELAYS (default 5 s, 30 s, 2 min, "
            "10 min, 1 h) on anything but a 2xx answer. Never changes the result's status.",
            "properties": {
                "url": {
                    "type": "string",
                    "description": "the callback URL without its query string and fragment",
                },
                "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                "attempts": {"type": "integer", "minimum": 0},
                "lastError": {
                    "type": ["string", "null"],
                    "description": "why the last attempt that failed did; null if none did",
                },
            },
            "required": ["url", "status", "attempts", "lastError"],
            "additionalProperties": False,
        },
        "Progress": {
            "type": "object",
            "description": "Written at most once per BGC_PROGRESS_SECONDS (default 1) per "
            "download, and at the end.",
            "properties": {
                "receivedBytes": {"type": "integer", "minimum": 0},
                "totalBytes": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "the origin's Content-Length; null when it sent none "
                    "(a chunked body)",
                },
            },
            "required": ["receivedBytes", "totalBytes"],
            "additionalProperties": False,
        },
        "ResultPage": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ref("Result"), "maxItems": MAX_LIMIT},
                "nextCursor": {
                    "type": ["string", "null"],
                    "description": "pass as `cursor` for the next page; null on the last page",
                },
            },
            "required": ["items", "nextCursor"],
            "additionalProperties": False,
        },
        "EnqueueRequest": {
            "type": "object",
            "properties": {
                "jobId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_JOB_ID_LENGTH,
                    "description": "the client's job",
                },
                "url": {
                    "type": "string",
                    "format": "uri",
                    "minLength": 1,
                    "maxLength": MAX_URL_LENGTH,
                    "description": "an absolute http or https URL, often presigned; without "
                    "user:password@. Query string and fragment never count for duplicates and "
                    "are never shown.",
                },
                "callbackUrl": {
                    "type": "string",
                    "format": "uri",
                    "minLength": 1,
                    "maxLength": MAX_URL_LENGTH,
                    "description": "an absolute http or https URL the result is POSTed to once "
                    "terminal (see the Callback schema); accepted only when the service has "
                    "BGC_WEBHOOK_SECRET set, else 400. Its query string is never shown.",
                },
            },
            "required": ["jobId", "url"],
            "additionalProperties": False,
            "examples": [
                {"jobId": "job-1", "url": "https://cdn.example.com/a/cat.png?X-Amz-Signature=abc"}
            ],
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"const": "ok"},
                "database": {"const": "ok"},
                "storage": {"const": "ok"},
            },
            "required": ["status", "database", "storage"],
            "additionalProperties": False,
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; problem types are "
            f"`{PROBLEM_BASE}<kind>` or `about:blank`. Other members are extensions.",
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
            },
            "required": ["type", "title", "status", "detail"],
            "additionalProperties": True,
        },
        "ErrorItem": {
            "type": "object",
            "description": "One problem with the request, located by a JSON pointer into the "
            "body (`#/jobId`, `#` for the whole body) or `?<name>` for a query parameter.",
            "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            "required": ["pointer", "detail"],
            "additionalProperties": False,
        },
        "ValidationProblem": _problem_with(
            {"errors": {"type": "array", "items": _ref("ErrorItem"), "minItems": 1}},
            ["errors"],
        ),
        "EnqueueRejected": {
            "description": "Either the single-object guard (no `errors`: the body is JSON but "
            "not one object) or a ValidationProblem listing each field problem.",
            "anyOf": [_ref("ValidationProblem"), _ref("Problem")],
        },
        "DuplicateProblem": _problem_with(
            {"existingId": {"type": "integer", "minimum": 1}}, ["existingId"]
        ),
        "HealthProblem": _problem_with(
            {
                "database": {"type": "string", "description": "`ok` or why not"},
                "storage": {"type": "string", "description": "`ok` or why not"},
            },
            ["database", "storage"],
        ),
    }


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
    from bgchallenge.web.app import MAX_BODY_BYTES  # app.py imports this module

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
            headers={
                "Retry-After": {
                    "required": True,
                    "description": "seconds",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
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
        "schema": {"type": "integer", "format": "int64", "minimum": 1},
        "description": "the result's id",
    }


def _etag_header(required: bool) -> Schema:
    return {
        "required": required,
        "description": "a strong ETag for exactly this query (filters, limit and cursor); it "
        "changes whenever a result the query could return is inserted or changes",
        "schema": {"type": "string", "pattern": '^"[^"]+"$'},
    }


def _result_operations() -> dict[str, Any]:
    location = {
        "required": True,
        "description": "/results/{id}",
        "schema": {"type": "string", "pattern": "^/results/[0-9]+$"},
    }
    cache_control = {"schema": {"type": "string", "const": "no-cache"}}
    return {
        "/results/enqueue": {
            "post": {
                "operationId": "enqueueResult",
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
            }
        },
        "/results/list": {
            "get": {
                "operationId": "listResults",
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
                        "schema": {"type": "string"},
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
            }
        },
        "/results/stream": {
            "get": {
                "operationId": "streamResults",
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
                        headers={
                            "Retry-After": {
                                "required": True,
                                "description": "seconds",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                            }
                        },
                    ),
                },
            }
        },
        "/results/{id}": {
            "get": {
                "operationId": "getResult",
                "summary": "Read one result",
                "parameters": [_id_parameter()],
                "responses": {
                    "200": _json(_ref("Result"), "The result."),
                    "404": _response_ref("NotFound"),
                },
            }
        },
        "/results/{id}/cancel": {
            "post": {
                "operationId": "cancelResult",
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
            }
        },
    }


def _operations_surface() -> dict[str, Any]:
    from bgchallenge.web.app import (  # app.py imports this module
        HEALTH_MAX_AGE_SECONDS,
        HEALTH_TIMEOUT_SECONDS,
    )

    text = {"schema": {"type": "string"}}
    return {
        "/health": {
            "get": {
                "operationId": "health",
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
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of this process",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": text},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI 3.1 document."),
                },
            }
        },
        DOCS_PATH: {
            "get": {
                "operationId": "docs",
                "summary": "This document as a page for people",
                "responses": {"200": {"description": "HTML.", "content": {"text/html": text}}},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the service has, as plain data."""
    paths = {**_operations_surface(), **_result_operations()}
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
            "`BGC_QUEUE` setting: `postgres`, `sqs` or `rabbitmq`).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": _security_schemes(),
        },
    }


def register_openapi(app: Quart) -> None:
    """Add ``GET /openapi.json`` and ``GET /docs``; neither needs a signature."""
    document = openapi_document()
    document_json = json.dumps(document, ensure_ascii=False)
    page = render_docs(document)

    @app.get(OPENAPI_PATH)
    async def openapi_json() -> Response:
        return Response(document_json, content_type="application/json; charset=utf-8")

    @app.get(DOCS_PATH)
    async def docs() -> Response:
        return Response(
            page,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": DOCS_CSP},
        )
