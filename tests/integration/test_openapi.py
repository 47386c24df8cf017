"""The OpenAPI document against the running service: schemathesis over every operation, the
document and the page served, and the inputs schemathesis found answered wrongly.

The service runs as a child process (``serve --role web``: no workers, so nothing is fetched).
This module is also schemathesis's hooks module (``SCHEMATHESIS_HOOKS``), for the
`errors_are_problems` check below.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import trio

from bgchallenge.settings import Settings
from bgchallenge.web.docs import DOCS_CSP
from bgchallenge.web.openapi import openapi_document
from bgchallenge.web.problems import PROBLEM_JSON
from tests.support.processes import ServiceProcess
from tests.support.rawhttp import open_connection, read_response

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
GUARD_SECONDS = 30
RUN_GUARD_SECONDS = 90
SIGNING_SECRET = "openapi-test-secret"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STREAM_PATH = "/results/stream"  # left out of schemathesis runs (see run_schemathesis)

# Per operation; about 10 s for the unsigned run on a laptop, and a fixed seed so that a failure
# reproduces (change it locally to explore other inputs).
MAX_EXAMPLES = 25
SEED = 20261128

# Checks that cannot hold by design, per operation:
# - GET /results/list: a `cursor` is opaque and signed; its schema says what one looks like (27
#   base64url characters), but only one the service issued for the same filters is accepted (400
#   otherwise, as documented). So a schema-valid request may be rejected: positive_data_acceptance
#   cannot hold there. (A cursor that does not look like one is negative data, refused alike.)
# Everything else runs with every check (each is on unless the config turns it off; naming them
# with `--checks` on the command line would override the per-operation setting). A valid but
# duplicate enqueue answers 409, which positive_data_acceptance accepts; ignored_auth holds
# because the document says signing is optional (`security: [{signature}, {}]`): it is on only
# when the service has a secret.
SCHEMATHESIS_CONFIG = """\
[checks]
enabled = true

[[operations]]
include-path = "/results/list"
checks.positive_data_acceptance.enabled = false
"""


@schemathesis.check
def errors_are_problems(
    ctx: schemathesis.CheckContext,
    response: schemathesis.Response,
    case: schemathesis.Case[Any],
) -> bool | None:
    """Every error, documented or not (405, 404 from routing, 5xx), is problem+json."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != PROBLEM_JSON:
        raise AssertionError(
            f"{response.status_code} answered as {content_type!r}, not problem+json"
        )
    body = json.loads(response.content)
    if not isinstance(body, dict) or body.get("status") != response.status_code:
        raise AssertionError(f"not a problem for {response.status_code}: {body!r}")
    return None


@pytest.fixture
async def web_service(settings: Settings) -> AsyncIterator[str]:
    """The base URL of ``serve --role web`` in a child process, signing off."""
    async for base_url in _running(settings):
        yield base_url


@pytest.fixture
async def signed_service(settings: Settings) -> AsyncIterator[str]:
    async for base_url in _running(settings, BGC_SIGNING_SECRET=SIGNING_SECRET):
        yield base_url


async def _running(settings: Settings, **env: str) -> AsyncIterator[str]:
    # With a webhook secret: a callbackUrl is then accepted, as the document says it may be.
    process = ServiceProcess(settings, "web", BGC_WEBHOOK_SECRET=WEBHOOK_SECRET, **env)
    try:
        ready = await process.wait_ready(within=GUARD_SECONDS)
        yield str(ready["addresses"][0])
    finally:
        process.close()


async def run_schemathesis(base_url: str, tmp_path: Path, *options: str) -> dict[str, Any]:
    """Run ``schemathesis run`` against the service; return its JSON report."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    report = tmp_path / "schemathesis-report.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{base_url}/openapi.json",
        # Schemathesis leaves out the operation that serves the document unless a filter names it.
        "--include-path-regex",
        "^/",
        # A valid stream request never ends by itself: test_stream.py covers that operation.
        "--exclude-path",
        STREAM_PATH,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--request-timeout",
        "5",
        # Fresh connections: a response sent before the request body has arrived leaves a
        # kept-alive connection hanging (test_an_early_answer_leaves_the_connection_usable pins
        # that bug); here it would only turn a schema check into a random timeout.
        "--header",
        "Connection: close",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *options,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.integration.test_openapi",
    }
    with trio.fail_after(RUN_GUARD_SECONDS):
        completed = await trio.run_process(
            command, cwd=tmp_path, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    output = (completed.stdout + completed.stderr).decode(errors="replace")
    assert report.exists(), output
    result: dict[str, Any] = json.loads(report.read_text())
    result["output"] = output
    return result


def assert_clean(report: dict[str, Any], operations: int) -> None:
    summary = {key: report[key] for key in ("operations", "test_cases", "failures", "errors")}
    detail = f"{json.dumps(summary, indent=1)}\n{report['output'][-6000:]}"
    assert report["failures"] == [], detail
    assert report["errors"] == [], detail
    assert report["operations"]["tested"] == report["operations"]["selected"] == operations, detail
    assert report["operations"]["total"] == operations + 1, detail  # the stream, left out
    assert report["complete"] and report["exit_code"] == 0, detail
    assert report["test_cases"]["generated"] >= 100, detail


@pytest.mark.slow
async def test_schemathesis_finds_nothing(web_service: str, tmp_path: Path) -> None:
    """Every operation, positive and negative data, every phase: no 5xx, every status, content
    type, header and body as documented, every error problem+json."""
    report = await run_schemathesis(web_service, tmp_path)
    assert_clean(report, operations=len(operation_labels()))


@pytest.mark.slow
async def test_schemathesis_with_signing_on(signed_service: str, tmp_path: Path) -> None:
    """Unsigned requests (schemathesis cannot sign): every /results/* answer is the documented
    401 problem with WWW-Authenticate, and the operations routes answer without a signature."""
    report = await run_schemathesis(
        signed_service, tmp_path, "--phases", "examples,coverage,fuzzing", "--max-examples", "5"
    )
    assert_clean(report, operations=len(operation_labels()))
    async with httpx.AsyncClient(base_url=signed_service, timeout=10) as client:
        with trio.fail_after(GUARD_SECONDS):
            for path in ("/openapi.json", "/docs", "/health", "/metrics"):
                assert (await client.get(path)).status_code == 200, path
            unsigned = await client.get("/results/list")
    assert unsigned.status_code == 401
    assert unsigned.headers["WWW-Authenticate"] == "Bgc-HMAC-SHA256"


def operation_labels() -> list[str]:
    return [
        f"{method.upper()} {path}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
        if path != STREAM_PATH
    ]


async def test_serves_the_document_and_the_page(web_service: str) -> None:
    async with httpx.AsyncClient(base_url=web_service, timeout=10) as client:
        with trio.fail_after(GUARD_SECONDS):
            document_response = await client.get("/openapi.json")
            page = await client.get("/docs")
    assert document_response.status_code == 200
    assert document_response.headers["Content-Type"].startswith("application/json")
    document = json.loads(document_response.content)
    assert document["openapi"] == "3.1.0"
    assert document == json.loads(json.dumps(openapi_document()))
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == DOCS_CSP


def chromium() -> str:
    """Debian's chromium (``apt-get install chromium``; the README's test command installs it
    when it can), or the one ``CHROMIUM`` names. Missing, the browser test fails: it does not
    skip."""
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found is None:
        pytest.fail(
            "no chromium to render /docs with: install Debian's `chromium` package "
            "(`apt-get install -y chromium`) or set CHROMIUM to a Chromium/Chrome binary"
        )
    return found


@pytest.mark.slow
async def test_swagger_ui_renders_every_operation(web_service: str, tmp_path: Path) -> None:
    """A real browser, offline but for the service: /docs loads Swagger UI from the service
    alone, Swagger UI loads /openapi.json and shows every operation (and the webhook) the
    document has."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # the suite may run as root (CI containers)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
        # virtual time runs until the page is idle (its scripts ran, its fetches answered)
        "--virtual-time-budget=30000",
        "--dump-dom",
        f"{web_service}/docs",
    ]
    with trio.fail_after(RUN_GUARD_SECONDS):
        completed = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    dom = completed.stdout.decode(errors="replace")
    detail = f"exit {completed.returncode}\n{dom[-3000:]}\n{completed.stderr.decode()[-3000:]}"
    assert completed.returncode == 0, detail
    assert "Failed to load API definition" not in dom, detail
    assert 'class="btn authorize' in dom, detail  # the signing schemes are shown
    document = openapi_document()
    # Swagger UI lists paths under the tag "default", webhooks by name under "webhooks".
    shown = [("default", path, ops) for path, ops in document["paths"].items()]
    shown += [("webhooks", name, ops) for name, ops in document["webhooks"].items()]
    for section, path, operations in shown:
        for method, operation in operations.items():
            block = re.search(
                f'id="operations-{section}-{operation["operationId"]}"(.*?)data-path="([^"]*)"',
                dom,
                re.DOTALL,
            )
            assert block is not None, f"{method.upper()} {path} is not on the page\n{detail}"
            assert block[2] == path
            assert f'opblock-summary-method">{method.upper()}<' in block[1]


def assert_documented(method: str, path: str, response: httpx.Response) -> None:
    """The status is documented for the operation, with the documented content type."""
    operation = openapi_document()["paths"][path][method]
    assert str(response.status_code) in operation["responses"], response.text
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == PROBLEM_JSON


# Inputs schemathesis can generate (each valid for the document, or an error the document
# names) that the service answers with 500. Each must be refused as a client error instead.
ENQUEUE_BODIES = {
    # PostgreSQL text cannot hold U+0000: psycopg.DataError on INSERT
    "nul-in-jobId": b'{"jobId": "a\\u0000b", "url": "https://cdn.example.com/a.png"}',
    # a lone surrogate is valid JSON syntax but cannot be encoded as UTF-8 for PostgreSQL
    "surrogate-in-jobId": b'{"jobId": "\\ud800", "url": "https://cdn.example.com/a.png"}',
    "surrogate-in-url": b'{"jobId": "j", "url": "https://cdn.example.com/\\ud800.png"}',
}


@pytest.mark.parametrize("body", ENQUEUE_BODIES.values(), ids=ENQUEUE_BODIES.keys())
async def test_enqueue_refuses_text_postgresql_cannot_store(web_service: str, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=web_service, timeout=10) as client:
        with trio.fail_after(GUARD_SECONDS):
            response = await client.post(
                "/results/enqueue", content=body, headers={"Content-Type": "application/json"}
            )
    assert response.status_code == 400, response.text
    assert_documented("post", "/results/enqueue", response)
    assert response.json()["errors"]


LIST_QUERIES = {
    # str.isdigit() is true for "²" but int("²") raises ValueError
    "superscript-limit": ("limit=%C2%B2", {400}),
    # no job can have this id: an empty page or a 400, but never a 500 (NUL reaches PostgreSQL)
    "nul-in-jobId": ("jobId=a%00b", {200, 400}),
}


@pytest.mark.parametrize("query, statuses", LIST_QUERIES.values(), ids=LIST_QUERIES.keys())
async def test_list_answers_odd_queries_as_documented(
    web_service: str, query: str, statuses: set[int]
) -> None:
    async with httpx.AsyncClient(base_url=web_service, timeout=10) as client:
        with trio.fail_after(GUARD_SECONDS):
            response = await client.get(f"/results/list?{query}")
    assert response.status_code in statuses, response.text
    assert_documented("get", "/results/list", response)


@pytest.mark.parametrize(
    ("request_line", "content_type", "status"),
    [
        (b"POST /results/enqueue", b"text/plain", 415),
        (b"POST /nowhere", b"application/json", 404),
        (b"PUT /results/enqueue", b"application/json", 405),
    ],
)
async def test_an_error_for_a_slow_body_leaves_the_connection_usable(
    web_service: str, request_line: bytes, content_type: bytes, status: int
) -> None:
    """A body that arrives after its headers (a slow client, a large body) and is refused
    (415, 404, 405 alike) must leave the kept-alive connection serving the next request.
    Answering before the body had arrived left it hung (hypercorn 0.18 with quart-trio
    0.12): the service reads the body first. Schemathesis hit it as a 10 s read timeout."""
    body = b"not json"
    head = (
        request_line
        + b" HTTP/1.1\r\nHost: test\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with trio.fail_after(GUARD_SECONDS):
        stream = await open_connection(web_service)
    async with stream:
        buffer = bytearray()
        with trio.fail_after(GUARD_SECONDS):
            await stream.send_all(head)
            await trio.sleep(0.2)  # the body comes later
            await stream.send_all(body)
            assert (await read_response(stream, buffer))[0] == status
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            assert (await read_response(stream, buffer))[0] == 200
