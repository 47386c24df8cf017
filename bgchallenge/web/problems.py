"""RFC 9457 problem details: every error the API answers is one of these (their bodies are
declared in `bgchallenge.web.schema`)."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from msgspec import Struct
from quart import Response

from bgchallenge.domain.enqueue import FieldProblem
from bgchallenge.web.schema import ErrorItem, Problem, ValidationProblem, encode, encode_problem

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:bgchallenge:problem:"


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    shape: type[Problem] = Problem,
    **members: Any,
) -> Response:
    """A problem+json response; ``kind`` names the problem type (``about:blank`` without);
    ``shape`` is the declared problem with ``members`` (snake_case) beside the standard ones."""
    body = shape(
        type=PROBLEM_BASE + kind if kind else "about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        **members,
    )
    return Response(
        encode_problem(body), status=status, content_type=PROBLEM_JSON, headers=headers or {}
    )


def invalid(detail: str, kind: str, problems: Iterable[FieldProblem]) -> Response:
    """A 400 listing each field problem (the domain's ``FieldProblem``s) in ``errors``."""
    errors = [ErrorItem(p.pointer, p.detail) for p in problems]
    return problem(400, detail, kind=kind, shape=ValidationProblem, errors=errors)


def json_response(
    body: Struct, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        encode(body), status=status, content_type="application/json", headers=headers or {}
    )


def not_modified(etag: str) -> Response:
    return Response(b"", status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
