"""docs/http.md and the OpenAPI document the service serves agree, both ways.

The document is read as a client reads it (``GET /openapi.json`` of the real app); docs/http.md
is parsed by its conventions: each operation is a heading ``### METHOD /path``, and in its
section a parameter table (rows ``| `name` | in | …``) and a status table (rows ``| 404 | …``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import trio

from bgchallenge.web.app import WebDependencies, create_app

ROOT = Path(__file__).resolve().parents[2]
HTTP_DOC = ROOT / "docs" / "http.md"

OPERATION_HEADING = re.compile(r"^### (GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*)$")
SECTION_END = re.compile(r"^#{1,3} ")
STATUS_ROW = re.compile(r"^\|\s*([1-5][0-9][0-9])\s*\|")
PARAMETER_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(query|header|path|cookie)\s*\|")

Operation = tuple[str, str]  # (METHOD, /path)


@functools.cache
def served_document() -> dict[str, Any]:
    """``GET /openapi.json`` of the real app; no request made here reaches its dependencies."""
    placeholders: dict[str, Any] = {
        field.name: object()
        for field in dataclasses.fields(WebDependencies)
        if field.default is dataclasses.MISSING
    }
    placeholders.update(signing_secret=None, cursor_key=b"k" * 32)
    client = create_app(WebDependencies(**placeholders)).test_client()

    async def fetch() -> dict[str, Any]:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        document: dict[str, Any] = await response.get_json()
        return document

    return trio.run(fetch)


def resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = document
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def document_operations() -> dict[Operation, dict[str, Any]]:
    document = served_document()
    return {
        (method.upper(), path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


@dataclasses.dataclass
class DocOperation:
    text: str
    statuses: set[str]
    parameters: set[tuple[str, str]]  # (name, in)


@functools.cache
def doc_operations() -> dict[Operation, DocOperation]:
    found: dict[Operation, DocOperation] = {}
    current: DocOperation | None = None
    for line in HTTP_DOC.read_text(encoding="utf-8").splitlines():
        heading = OPERATION_HEADING.match(line)
        if heading:
            key = (heading[1], heading[2])
            assert key not in found, f"{key} documented twice"
            current = found[key] = DocOperation("", set(), set())
            continue
        if SECTION_END.match(line):
            current = None
        if current is None:
            continue
        current.text += line + "\n"
        if status := STATUS_ROW.match(line):
            current.statuses.add(status[1])
        if parameter := PARAMETER_ROW.match(line):
            current.parameters.add((parameter[1], parameter[2]))
    return found


def test_the_same_operations() -> None:
    assert set(doc_operations()) == set(document_operations())


def test_the_same_statuses_for_each_operation() -> None:
    documented = doc_operations()
    for key, operation in document_operations().items():
        assert documented[key].statuses == set(operation["responses"]), key


def test_the_same_parameters_for_each_operation() -> None:
    document = served_document()
    documented = doc_operations()
    for key, operation in document_operations().items():
        parameters = {
            (p["name"], p["in"])
            for p in (resolve(document, raw) for raw in operation.get("parameters", []))
        }
        assert documented[key].parameters == parameters, key


def test_every_response_header_is_named_in_its_operation() -> None:
    document = served_document()
    documented = doc_operations()
    for key, operation in document_operations().items():
        for status, raw in operation["responses"].items():
            for header in resolve(document, raw).get("headers", {}):
                assert f"`{header}" in documented[key].text, (key, status, header)


def test_every_member_of_every_schema_is_named() -> None:
    document = served_document()
    text = HTTP_DOC.read_text(encoding="utf-8")
    members: set[str] = set()

    def collect(schema: dict[str, Any]) -> None:
        members.update(schema.get("properties", {}))
        for combined in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(combined, []):
                collect(part)

    for schema in document["components"]["schemas"].values():
        collect(schema)
    missing = sorted(
        name for name in members if f'"{name}"' not in text and f"`{name}`" not in text
    )
    assert missing == []


def test_the_parser_sees_what_it_should() -> None:
    """The conventions hold on a sample: a heading, a parameter row and status rows."""
    enqueue = doc_operations()[("POST", "/results/enqueue")]
    assert {"202", "409", "413"} <= enqueue.statuses
    listing = doc_operations()[("GET", "/results/list")]
    assert ("If-None-Match", "header") in listing.parameters
