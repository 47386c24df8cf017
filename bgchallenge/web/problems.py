"""RFC 9457 problem details: every error the API answers is one of these."""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from quart import Response

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:bgchallenge:problem:"


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **members: Any,
) -> Response:
    """A problem+json response; ``kind`` names the problem type (``about:blank`` without)."""
    body = {
        "type": PROBLEM_BASE + kind if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **members,
    }
    return Response(
        json.dumps(body), status=status, content_type=PROBLEM_JSON, headers=headers or {}
    )


def invalid(detail: str, kind: str, problems: Iterable[Any]) -> Response:
    """A 400 listing each field problem (the domain's ``FieldProblem``s) in ``errors``."""
    return problem(400, detail, kind=kind, errors=[p.render() for p in problems])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, content_type="application/json", headers=headers or {}
    )


def not_modified(etag: str) -> Response:
    return Response(b"", status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
