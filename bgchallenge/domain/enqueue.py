"""Validation of the enqueue request body: pure, so every rule is tested without a server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bgchallenge.domain.expiry import is_expired, url_expiry
from bgchallenge.domain.paths import (
    InvalidUrl,
    SourceUrl,
    parse_source_url,
    storable_text_problem,
)
from bgchallenge.domain.results import format_timestamp

MAX_JOB_ID_LENGTH = 200
ALLOWED_MEMBERS = ("jobId", "url", "callbackUrl")


@dataclass(frozen=True)
class FieldProblem:
    """One problem with the body, located by a JSON pointer (RFC 9457's ``errors`` style)."""

    pointer: str
    detail: str

    def render(self) -> dict[str, str]:
        return {"pointer": self.pointer, "detail": self.detail}


@dataclass(frozen=True)
class EnqueueRequest:
    job_id: str
    source: SourceUrl
    url_expires_at: datetime | None = None  # read from a presigned query (domain/expiry.py)
    callback: SourceUrl | None = None  # where to POST the result once terminal


class NotAnObject(ValueError):
    """The body is valid JSON but not a single JSON object."""


class InvalidBody(ValueError):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.pointer}: {p.detail}" for p in problems))
        self.problems = problems


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_enqueue_body(
    raw: bytes, now: datetime | None = None, *, callbacks: bool = False
) -> EnqueueRequest:
    """Parse and validate the raw body; with ``now``, a presigned URL already expired then is
    a problem of ``#/url``. ``callbacks``: whether a ``callbackUrl`` may be given (the service
    has a webhook secret to sign them with).

    Raises `InvalidBody` listing every problem, or `NotAnObject` for JSON that is not an object.
    """
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidBody([FieldProblem("#", f"malformed JSON: {exc}")]) from exc
    except RecursionError:  # json's parser recurses once per level of nesting
        raise InvalidBody([FieldProblem("#", "malformed JSON: nested too deeply")]) from None
    if not isinstance(body, dict):
        raise NotAnObject(f"a single JSON object is required, not {_json_kind(body)}")

    problems = [
        FieldProblem(f"#/{name}", "unknown member") for name in body if name not in ALLOWED_MEMBERS
    ]
    job_id = body.get("jobId")
    url = body.get("url")
    if job_id is None:
        problems.append(FieldProblem("#/jobId", "is required"))
    elif not isinstance(job_id, str):
        problems.append(FieldProblem("#/jobId", "must be a string"))
    elif not job_id:
        problems.append(FieldProblem("#/jobId", "must not be empty"))
    elif len(job_id) > MAX_JOB_ID_LENGTH:
        problems.append(FieldProblem("#/jobId", f"must be at most {MAX_JOB_ID_LENGTH} characters"))
    if url is None:
        problems.append(FieldProblem("#/url", "is required"))
    elif not isinstance(url, str):
        problems.append(FieldProblem("#/url", "must be a string"))
    elif not url:
        problems.append(FieldProblem("#/url", "must not be empty"))
    callback_url = body.get("callbackUrl")
    if "callbackUrl" in body and callbacks and not isinstance(callback_url, str):
        problems.append(FieldProblem("#/callbackUrl", "must be a string"))
    elif "callbackUrl" in body and callbacks and not callback_url:
        problems.append(FieldProblem("#/callbackUrl", "must not be empty"))
    try:
        request = check_enqueue(
            job_id if isinstance(job_id, str) and 0 < len(job_id) <= MAX_JOB_ID_LENGTH else None,
            url if isinstance(url, str) and url else None,
            callback_url if isinstance(callback_url, str) and callback_url else None,
            now=now,
            callbacks=callbacks,
            callback_given="callbackUrl" in body,
        )
    except InvalidBody as exc:
        problems.extend(exc.problems)
    if problems:
        raise InvalidBody(sorted(problems, key=_member_order))
    return request


def _member_order(problem: FieldProblem) -> int:
    """Unknown members first, then the members in their declared order (as listed before)."""
    name = problem.pointer.removeprefix("#/")
    return ALLOWED_MEMBERS.index(name) + 1 if name in ALLOWED_MEMBERS else 0


def check_enqueue(
    job_id: str | None,
    url: str | None,
    callback_url: str | None,
    *,
    now: datetime | None,
    callbacks: bool,
    callback_given: bool,
) -> EnqueueRequest:
    """The rules beyond the body's shape (members, types, lengths, which the web layer's
    declaration of the body checks): text PostgreSQL can store, an absolute http(s) URL, not
    already expired at ``now``, a callback only when ``callbacks`` are on. A None member had a
    shape problem already; its other rules are not checked. Raises `InvalidBody`."""
    problems = []
    if job_id is not None and (unstorable := storable_text_problem(job_id)):
        problems.append(FieldProblem("#/jobId", unstorable))

    source: SourceUrl | None = None
    expires_at: datetime | None = None
    if url is not None:
        try:
            source = parse_source_url(url)
        except InvalidUrl as exc:
            problems.append(FieldProblem("#/url", str(exc)))
        else:
            # Read here: the query string is dropped once the result is terminal.
            expires_at = url_expiry(url)
            if now is not None and is_expired(expires_at, now):
                shown = format_timestamp(expires_at)
                problems.append(FieldProblem("#/url", f"the presigned URL expired at {shown}"))

    callback: SourceUrl | None = None
    if callback_given:
        problem = None
        if not callbacks:
            problem = "callbacks are off on this service (it has no BGC_WEBHOOK_SECRET)"
        elif callback_url is not None:
            try:
                # the same rules as the source URL: absolute http(s), at most 2048 characters
                callback = parse_source_url(callback_url)
            except InvalidUrl as exc:
                problem = str(exc)
        if problem:
            problems.append(FieldProblem("#/callbackUrl", problem))

    if problems or job_id is None or source is None:
        raise InvalidBody(problems)
    return EnqueueRequest(
        job_id=job_id, source=source, url_expires_at=expires_at, callback=callback
    )


def _json_kind(value: object) -> str:
    match value:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
    return "a non-object value"
