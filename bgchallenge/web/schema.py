"""The wire format of the HTTP API, declared once: every JSON body a client sends or receives.

Each body is a `msgspec.Struct`; from these declarations come the validation of the enqueue
body (`decode_enqueue`), the JSON encoding of every answer (`encode`, `result_json`) and the
schemas of the OpenAPI document (`components`). The rules no JSON Schema can say (a URL that
parses, text PostgreSQL can store, an expiry) stay in the domain, which also words every
problem for the client (`bgchallenge.domain.enqueue`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from bgchallenge.domain import enqueue, results
from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH
from bgchallenge.domain.failures import EXHAUSTED, PERMANENT_CODES, TRANSIENT_CODES
from bgchallenge.domain.listing import MAX_LIMIT
from bgchallenge.domain.paths import MAX_URL_LENGTH
from bgchallenge.domain.results import Status, format_timestamp

REF_TEMPLATE = "#/components/schemas/{name}"

# ---- Members shared by several bodies ------------------------------------------------------

# PostgreSQL text holds no NUL (the domain also refuses lone surrogates, which no pattern says).
NO_NUL = r"^[^\x00]*$"
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
JobId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_JOB_ID_LENGTH,
        pattern=NO_NUL,
        description="the client's job this result belongs to",
    ),
]
HttpUrl = Annotated[
    str, Meta(min_length=1, max_length=MAX_URL_LENGTH, extra_json_schema={"format": "uri"})
]
Count = Annotated[int, Meta(ge=0)]
ERROR_CODES = sorted(PERMANENT_CODES | TRANSIENT_CODES | {EXHAUSTED})


class _Body(Struct, rename="camel", forbid_unknown_fields=True):
    """Members are camelCase on the wire."""


# ---- Requests ------------------------------------------------------------------------------


class EnqueueRequest(_Body):
    job_id: Annotated[JobId, Meta(description="the client's job")]
    url: Annotated[
        HttpUrl,
        Meta(
            description="an absolute http or https URL, often presigned; without "
            "user:password@. Query string and fragment never count for duplicates and are "
            "never shown."
        ),
    ]
    callback_url: (
        Annotated[
            HttpUrl,
            Meta(
                description="an absolute http or https URL the result is POSTed to once "
                "terminal (see the Callback schema); accepted only when the service has "
                "BGC_WEBHOOK_SECRET set, else 400. Its query string is never shown."
            ),
        ]
        | UnsetType
    ) = UNSET


ENQUEUE_EXAMPLE = {"jobId": "job-1", "url": "https://cdn.example.com/a/cat.png?X-Amz-Signature=abc"}
ENQUEUE_DECODER = msgspec.json.Decoder(EnqueueRequest)


def decode_enqueue(raw: bytes, *, now: datetime, callbacks: bool) -> enqueue.EnqueueRequest:
    """The enqueue request in ``raw``: its shape checked by the declaration, then the domain's
    rules. When the declaration refuses it, the domain's parser lists every problem in the
    API's words (msgspec names the first one only). Raises `InvalidBody` or `NotAnObject`."""
    try:
        body = ENQUEUE_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return enqueue.parse_enqueue_body(raw, now, callbacks=callbacks)
    callback_url = None if isinstance(body.callback_url, UnsetType) else body.callback_url
    return enqueue.check_enqueue(
        body.job_id,
        body.url,
        callback_url,
        now=now,
        callbacks=callbacks,
        callback_given=callback_url is not None,
    )


# ---- Results -------------------------------------------------------------------------------


class ResultError(_Body):
    """The last error of a result."""

    code: Annotated[
        str,
        Meta(
            extra_json_schema={"enum": ERROR_CODES},
            description="Permanent (no retry): "
            + ", ".join(sorted(PERMANENT_CODES))
            + ". Transient (retried): "
            + ", ".join(sorted(TRANSIENT_CODES))
            + f". {EXHAUSTED}: the last transient error, after the final attempt.",
        ),
    ]
    message: str


class StoredObject(_Body):
    """Where a succeeded result's bytes are stored."""

    bucket: str
    key: Annotated[str, Meta(description="results/<id>/<file name>")]
    size: Annotated[Count, Meta(description="bytes")]
    content_type: Annotated[
        str,
        Meta(
            description="the type the bytes themselves show, which the object is stored with: "
            "image/png, image/jpeg, image/gif, image/webp, image/bmp, image/tiff, "
            "image/vnd.microsoft.icon, image/avif, image/heic, image/heif, image/heif-sequence "
            "or image/svg+xml"
        ),
    ]
    declared_content_type: Annotated[
        str | None,
        Meta(
            description="what the origin's Content-Type said; null for a result stored before "
            "the service recorded it"
        ),
    ]
    sha256: Annotated[
        str, Meta(pattern="^[0-9a-f]{64}$", description="hex SHA-256 of the stored bytes")
    ]


class Progress(_Body):
    """Written at most once per BGC_PROGRESS_SECONDS (default 1) per download, and at the end."""

    received_bytes: Count
    total_bytes: Annotated[
        Count | None,
        Meta(description="the origin's Content-Length; null when it sent none (a chunked body)"),
    ]


class Callback(_Body):
    """The POST of the result's JSON to callbackUrl once it is terminal, signed as Standard
    Webhooks says (webhook-id, webhook-timestamp, webhook-signature); retried after
    BGC_CALLBACK_DELAYS (default 5 s, 30 s, 2 min, 10 min, 1 h) on anything but a 2xx answer.
    Never changes the result's status."""

    url: Annotated[str, Meta(description="the callback URL without its query string and fragment")]
    status: Annotated[str, Meta(extra_json_schema={"enum": ["pending", "delivered", "failed"]})]
    attempts: Count
    last_error: Annotated[
        str | None, Meta(description="why the last attempt that failed did; null if none did")
    ]


class Result(_Body):
    """One remote image the service was asked to copy into object storage."""

    id: Annotated[
        int,
        Meta(
            ge=1,
            description="assigned by the service, increasing",
            extra_json_schema={"format": "int64"},
        ),
    ]
    job_id: JobId
    url: Annotated[
        str,
        Meta(
            description="the source URL without its query string and fragment (a presigned "
            "URL's query is a credential: it is never shown)"
        ),
    ]
    object_path: Annotated[
        str,
        Meta(
            pattern="^/",
            description="the URL's path normalised as RFC 3986 §6.2.2 says; (jobId, host, "
            "objectPath) identify a result",
        ),
    ]
    status: Status
    attempts: Annotated[
        Count,
        Meta(description="attempts started so far, less any handed back by a graceful shutdown"),
    ]
    error: Annotated[ResultError | None, Meta(description="the last error, or null")]
    storage: Annotated[
        StoredObject | None,
        Meta(description="where the bytes are, after success; otherwise null"),
    ]
    created_at: Annotated[Timestamp, Meta(description="RFC 3339, UTC, milliseconds")]
    updated_at: Annotated[Timestamp, Meta(description="RFC 3339, UTC, milliseconds")]
    started_at: Annotated[Timestamp | None, Meta(description="when the first attempt started")]
    ended_at: Annotated[
        Timestamp | None, Meta(description="when it became succeeded, failed or canceled")
    ]
    canceled_at: Annotated[Timestamp | None, Meta(description="when it was canceled")]
    duration_ms: Annotated[
        Count | None,
        Meta(description="endedAt - startedAt in milliseconds; null until both exist"),
    ]
    url_expires_at: Annotated[
        Timestamp | None,
        Meta(
            description="when the presigned source URL expires, read from its query at "
            "enqueue (AWS SigV4/SigV2, CloudFront, Google, Azure SAS); null when it names none"
        ),
    ]
    progress: Annotated[
        Progress | None,
        Meta(
            description="the download of the current (or last) attempt; null before its first "
            "byte arrives"
        ),
    ]
    callback: Annotated[
        Callback | None,
        Meta(description="the completion callback, when a callbackUrl was given"),
    ]


def result_body(result: results.Result) -> Result:
    """The result as the API shows it: to clients, on streams and to completion callbacks."""
    error, storage, progress, callback = (
        result.error,
        result.storage,
        result.progress,
        result.callback,
    )
    return Result(
        id=result.id,
        job_id=result.job_id,
        url=result.url,
        object_path=result.object_path,
        status=result.status,
        attempts=result.attempts,
        error=ResultError(error.code, error.message) if error else None,
        storage=(
            StoredObject(
                bucket=storage.bucket,
                key=storage.key,
                size=storage.size,
                content_type=storage.content_type,
                declared_content_type=storage.declared_content_type,
                sha256=storage.sha256,
            )
            if storage
            else None
        ),
        created_at=_timestamp(result.created_at),
        updated_at=_timestamp(result.updated_at),
        started_at=format_timestamp(result.started_at),
        ended_at=format_timestamp(result.ended_at),
        canceled_at=format_timestamp(result.canceled_at),
        duration_ms=result.duration_ms,
        url_expires_at=format_timestamp(result.url_expires_at),
        progress=Progress(progress.received_bytes, progress.total_bytes) if progress else None,
        callback=(
            Callback(callback.url, callback.status, callback.attempts, callback.last_error)
            if callback
            else None
        ),
    )


def _timestamp(moment: datetime) -> str:
    shown = format_timestamp(moment)
    assert shown is not None
    return shown


def render_result(result: results.Result) -> dict[str, Any]:
    """The result as plain JSON data (what `result_json` encodes)."""
    rendered: dict[str, Any] = msgspec.to_builtins(result_body(result))
    return rendered


def result_json(result: results.Result) -> bytes:
    return encode(result_body(result))


class ResultPage(_Body):
    items: Annotated[list[Result], Meta(max_length=MAX_LIMIT)]
    next_cursor: Annotated[
        str | None,
        Meta(description="pass as `cursor` for the next page; null on the last page"),
    ]


# ---- Operations ----------------------------------------------------------------------------


class Health(_Body):
    status: Literal["ok"]
    database: Literal["ok"]
    storage: Literal["ok"]


# ---- Problems (RFC 9457) -------------------------------------------------------------------


class Problem(_Body, forbid_unknown_fields=False):
    """RFC 9457 problem details; problem types are `urn:bgchallenge:problem:<kind>` or
    `about:blank`. Other members are extensions."""

    type: Annotated[str, Meta(extra_json_schema={"format": "uri-reference"})]
    title: str
    status: Annotated[int, Meta(ge=400, le=599)]
    detail: str


class ErrorItem(_Body):
    """One problem with the request, located by a JSON pointer into the body (`#/jobId`, `#`
    for the whole body) or `?<name>` for a query parameter."""

    pointer: str
    detail: str


class ValidationProblem(Problem):
    """A problem listing each field problem in `errors`."""

    errors: Annotated[list[ErrorItem], Meta(min_length=1)]


class DuplicateProblem(Problem):
    """This job already has a result for this object; `existingId` names it."""

    existing_id: Annotated[int, Meta(ge=1)]


class HealthProblem(Problem):
    """A part is not answering."""

    database: Annotated[str, Meta(description="`ok` or why not")]
    storage: Annotated[str, Meta(description="`ok` or why not")]


# ---- Encoding and the document's schemas ---------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode(body: Struct) -> bytes:
    """A body as JSON. Text in it is valid Unicode: every member was validated on the way in
    or read from PostgreSQL (see `encode_problem` for the exception)."""
    return _encoder.encode(body)


def encode_problem(body: Problem) -> bytes:
    """A problem as JSON; ``\\u`` escapes, since a problem may quote what a client sent (an
    unknown member's name), lone surrogates included."""
    return json.dumps(msgspec.to_builtins(body)).encode()


# Every body the document names, in the order it lists them.
DOCUMENTED: tuple[Any, ...] = (
    Result,
    ResultPage,
    EnqueueRequest,
    Health,
    Problem,
    ErrorItem,
    ValidationProblem,
    DuplicateProblem,
    HealthProblem,
)


def components() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of every body, for the OpenAPI document's ``components/schemas``."""
    _, schemas = msgspec.json.schema_components(DOCUMENTED, ref_template=REF_TEMPLATE)
    result: dict[str, dict[str, Any]] = dict(schemas)
    for schema in result.values():
        schema.pop("title", None)
        if "description" in schema:  # a docstring: its lines are one paragraph
            schema["description"] = " ".join(schema["description"].split())
    # msgspec sorts an enum's values; the document lists the states in the order they come
    result["Status"]["enum"] = [status.value for status in Status]
    result["EnqueueRequest"]["examples"] = [ENQUEUE_EXAMPLE]
    return result
