"""The declaration of the API's bodies (web/schema.py): the enqueue body's validation agrees
with the domain's parser (which words the problems), answers validate against the document,
and the document's formats are the ones the service issues and accepts."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

import bgchallenge.web
from bgchallenge.domain.enqueue import EnqueueRequest, InvalidBody, NotAnObject, parse_enqueue_body
from bgchallenge.domain.listing import ListQuery, encode_cursor
from bgchallenge.web.openapi import openapi_document
from bgchallenge.web.schema import (
    ENQUEUE_DECODER,
    DuplicateProblem,
    ErrorItem,
    HealthProblem,
    Problem,
    ValidationProblem,
    decode_enqueue,
    encode_problem,
)

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SIGV4 = (
    "https://b.s3.amazonaws.com/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20261201T095500Z&X-Amz-Expires={}&X-Amz-Signature=abc"
)
TEXTS = st.one_of(
    st.sampled_from(
        [
            "",
            "j",
            "j" * 200,
            "j" * 201,
            "a\x00b",
            "\ud800",
            "https://e.com/a.png?sig=1",
            "ftp://e.com/x",
            "/relative",
            "https://user:pw@e.com/a",
            "https://e.com/" + "a" * 2040,
            SIGV4.format(600),
            SIGV4.format(60),
        ]
    ),
    st.text(max_size=8),
)
VALUES = st.one_of(TEXTS, st.none(), st.integers(), st.booleans(), st.lists(st.integers()))
BODIES = st.dictionaries(
    st.sampled_from(["jobId", "url", "callbackUrl", "extra", "JobId"]), VALUES, max_size=4
)


def outcome(parse: Any, raw: bytes, callbacks: bool) -> Any:
    try:
        request: EnqueueRequest = parse(raw, callbacks)
    except InvalidBody as exc:
        return [(p.pointer, p.detail) for p in exc.problems]
    except NotAnObject as exc:
        return str(exc)
    return request


@settings(max_examples=400, deadline=None)
@given(body=BODIES, callbacks=st.booleans())
def test_the_declaration_and_the_domain_agree_on_every_body(
    body: dict[str, Any], callbacks: bool
) -> None:
    """Accepted alike, and refused with the same problems, whichever path answers; and what
    the declaration (so the document) refuses, the domain refuses too."""
    raw = json.dumps(body).encode()
    declared = outcome(lambda r, c: decode_enqueue(r, now=NOW, callbacks=c), raw, callbacks)
    domain = outcome(lambda r, c: parse_enqueue_body(r, NOW, callbacks=c), raw, callbacks)
    assert declared == domain
    try:
        ENQUEUE_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        assert not isinstance(domain, EnqueueRequest)


def test_raw_bodies_that_are_not_one_object() -> None:
    for raw in [b"[]", b"3", b"{", b"", b"\xff", b'{"jobId": NaN}', b"[" * 100_000]:
        declared = outcome(lambda r, c: decode_enqueue(r, now=NOW, callbacks=c), raw, False)
        assert declared == outcome(lambda r, c: parse_enqueue_body(r, NOW, callbacks=c), raw, False)


def validator(name: str) -> jsonschema_rs.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", **openapi_document()}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def test_problems_validate_against_their_schemas() -> None:
    standard = {"type": "urn:bgchallenge:problem:x", "title": "Bad Request", "detail": "d"}
    bodies = {
        "Problem": Problem(status=400, **standard),
        "ValidationProblem": ValidationProblem(
            status=400, errors=[ErrorItem("#/\ud800", "unknown member")], **standard
        ),
        "DuplicateProblem": DuplicateProblem(status=409, existing_id=7, **standard),
        "HealthProblem": HealthProblem(status=503, database="ok", storage="no", **standard),
    }
    for name, body in bodies.items():
        encoded = json.loads(encode_problem(body))
        validator(name).validate(encoded)
        assert not validator(name).is_valid({**encoded, "status": 200})


def test_the_documented_cursor_is_the_issued_one() -> None:
    parameters = openapi_document()["paths"]["/results/list"]["get"]["parameters"]
    (cursor,) = (p["schema"] for p in parameters if p["name"] == "cursor")
    query = ListQuery(job_id="j", statuses=None, limit=10, after_id=0)
    for after_id in (0, 1, 2**31, 2**63 - 1):
        issued = encode_cursor(b"k" * 32, query, after_id)
        assert cursor["minLength"] <= len(issued) <= cursor["maxLength"]
        assert re.fullmatch(cursor["pattern"].strip("^$"), issued)


def test_the_web_layer_hides_no_import_in_a_function() -> None:
    """Its modules import each other at the top, so a cycle would show at once."""
    for module in Path(bgchallenge.web.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert id(node) in top_level, f"{module.name}:{node.lineno}"
