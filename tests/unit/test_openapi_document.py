"""The OpenAPI document: valid, complete (every route, nothing more), built from the rules."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
from openapi_spec_validator import validate  # installed with moto[server] (the dev extra)

from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH
from bgchallenge.domain.failures import EXHAUSTED, PERMANENT_CODES, TRANSIENT_CODES
from bgchallenge.domain.listing import DEFAULT_LIMIT, MAX_LIMIT
from bgchallenge.domain.paths import MAX_URL_LENGTH
from bgchallenge.domain.results import (
    Progress,
    Result,
    ResultError,
    Status,
    StoredObject,
)
from bgchallenge.web.app import WebDependencies, create_app
from bgchallenge.web.docs import DOCS_CSP, DOCS_PAGE, SWAGGER_UI_FILES
from bgchallenge.web.openapi import openapi_document
from bgchallenge.web.schema import render_result

DOCUMENTED_ONLY_BY_FRAMEWORK = {"HEAD", "OPTIONS"}


def make_app(signing_secret: str | None = None) -> Any:
    """The real app. Its dependencies are placeholders: no request made here reaches them."""
    placeholders: dict[str, Any] = {
        field.name: object()
        for field in dataclasses.fields(WebDependencies)
        if field.default is dataclasses.MISSING
    }
    placeholders.update(signing_secret=signing_secret, cursor_key=b"k" * 32)
    return create_app(WebDependencies(**placeholders))


def schema_validator(document: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def test_is_a_valid_openapi_3_1_document() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_documents_every_route_of_the_app_and_nothing_else() -> None:
    app = make_app()
    routes = {
        (re.sub(r"<[^>]+>", "{}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in DOCUMENTED_ONLY_BY_FRAMEWORK
    }
    documented = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper())
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    assert routes == documented


def test_limits_come_from_the_validation() -> None:
    document = openapi_document()
    body = document["components"]["schemas"]["EnqueueRequest"]
    assert body["properties"]["jobId"]["maxLength"] == MAX_JOB_ID_LENGTH
    assert body["properties"]["url"]["maxLength"] == MAX_URL_LENGTH
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"jobId", "url"}
    parameters = {p["name"]: p for p in document["paths"]["/results/list"]["get"]["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == MAX_LIMIT
    assert parameters["limit"]["schema"]["default"] == DEFAULT_LIMIT
    assert parameters["jobId"]["schema"]["maxLength"] == MAX_JOB_ID_LENGTH
    schemas = document["components"]["schemas"]
    assert schemas["Status"]["enum"] == [s.value for s in Status]
    codes = set(schemas["ResultError"]["properties"]["code"]["enum"])
    assert codes == PERMANENT_CODES | TRANSIENT_CODES | {EXHAUSTED}


def test_results_routes_are_signed_and_may_answer_401_and_503() -> None:
    document = openapi_document()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path.startswith("/results/"):
                assert {"bgcTimestamp": [], "bgcSignature": []} in operation["security"]
                assert {"401", "503"} <= set(operation["responses"])
            else:
                assert operation["security"] == []
                assert "401" not in operation["responses"]


def sample_result(**changes: Any) -> Result:
    moment = datetime(2026, 11, 28, 21, 49, 7, 123456, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": 7,
        "job_id": "job-1",
        "url": "https://cdn.example.com/a/cat.png",
        "object_path": "/a/cat.png",
        "status": Status.QUEUED,
        "attempts": 0,
        "error": None,
        "storage": None,
        "created_at": moment,
        "updated_at": moment,
        "started_at": None,
        "ended_at": None,
        "canceled_at": None,
    }
    fields.update(changes)
    return Result(**fields)


@pytest.mark.parametrize(
    "result",
    [
        sample_result(),
        sample_result(
            status=Status.SUCCEEDED,
            attempts=1,
            storage=StoredObject("bucket", "results/7/cat.png", 12, "image/png", "a" * 64),
            started_at=datetime(2026, 11, 28, 21, 49, 8, tzinfo=UTC),
            ended_at=datetime(2026, 11, 28, 21, 49, 9, tzinfo=UTC),
        ),
        sample_result(
            status=Status.FAILED,
            attempts=4,
            error=ResultError(EXHAUSTED, "4 attempts failed"),
            started_at=datetime(2026, 11, 28, 21, 49, 8, tzinfo=UTC),
            ended_at=datetime(2026, 11, 28, 21, 49, 9, tzinfo=UTC),
        ),
        sample_result(
            status=Status.CANCELED,
            ended_at=datetime(2026, 11, 28, 21, 49, 9, tzinfo=UTC),
            canceled_at=datetime(2026, 11, 28, 21, 49, 9, tzinfo=UTC),
        ),
        sample_result(
            status=Status.RUNNING,
            attempts=1,
            started_at=datetime(2026, 11, 28, 21, 49, 8, tzinfo=UTC),
            progress=Progress(4096, 20000),
        ),
        sample_result(
            status=Status.RUNNING,
            attempts=2,
            started_at=datetime(2026, 11, 28, 21, 49, 8, tzinfo=UTC),
            progress=Progress(4096, None),
        ),
    ],
    ids=["queued", "succeeded", "failed", "canceled", "running", "running-chunked"],
)
def test_rendered_results_match_the_result_schema(result: Result) -> None:
    validator = schema_validator(openapi_document(), "Result")
    rendered = render_result(result)
    validator.validate(rendered)
    assert set(rendered) == set(openapi_document()["components"]["schemas"]["Result"]["required"])


def test_the_request_example_is_valid() -> None:
    document = openapi_document()
    validator = schema_validator(document, "EnqueueRequest")
    for example in document["components"]["schemas"]["EnqueueRequest"]["examples"]:
        validator.validate(example)
    assert not validator.is_valid({"jobId": "j", "url": "https://e.com/a", "extra": 1})
    assert not validator.is_valid({"jobId": "", "url": "https://e.com/a"})
    assert not validator.is_valid({"jobId": "j" * (MAX_JOB_ID_LENGTH + 1), "url": "https://e.com"})


def test_docs_page_loads_only_swagger_ui_files_from_this_service() -> None:
    """Works offline: every script, style sheet and icon is one of the wheel's own files, under
    the app's static route; the CSP allows nothing from elsewhere."""
    referenced = re.findall(r'(?:src|href)="([^"]+)"', DOCS_PAGE)
    assert len(referenced) == 3
    for url in referenced:
        assert url.startswith("/docs/assets/"), url
        assert (SWAGGER_UI_FILES / url.removeprefix("/docs/assets/")).is_file(), url
    assert "http" not in DOCS_PAGE
    for directive in DOCS_CSP.split("; "):
        assert "http" not in directive and "*" not in directive, directive


async def test_docs_assets_are_served() -> None:
    client = make_app().test_client()
    page = await client.get("/docs")
    for url in re.findall(r'(?:src|href)="([^"]+)"', await page.get_data(as_text=True)):
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert await asset.get_data() == (SWAGGER_UI_FILES / url.rsplit("/", 1)[1]).read_bytes()
    missing = await client.get("/docs/assets/nothing.js")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"


async def test_openapi_and_docs_need_no_signature_when_signing_is_on() -> None:
    client = make_app(signing_secret="s3cret").test_client()
    document = await client.get("/openapi.json")
    assert document.status_code == 200
    assert (await document.get_json())["openapi"] == "3.1.0"
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert docs.mimetype == "text/html"
    # while the API itself is refused unsigned (before any dependency is touched)
    unsigned = await client.get("/results/1")
    assert unsigned.status_code == 401
