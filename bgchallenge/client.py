"""``bgchallenge submit``: a small synchronous client of our own API.

Synchronous on purpose: the command does one thing at a time (enqueue line after line, then
poll), so a blocking `httpx.Client` is the simplest honest tool; no async code runs here, which
is why `time.sleep` paces the polls. All of the command's HTTP is in this module; what it shows
is computed by the pure `bgchallenge.domain.progress`.

Errors, each carrying one clear line for stderr::

    SubmitError
     ├── UsageError          bad arguments (job id, server URL, unreadable file): exit 2
     ├── ServerUnreachable   connection refused, name not found, no answer in time: exit 1
     └── ServerRefused       an answer the command cannot go on after (401, 5xx, not our API)

Choices where the contract is silent:

- ``--wait`` waits for every result the job has, including ones enqueued earlier or by others.
- Canceled results are shown (progress and summary) but do not fail the command: a cancel is
  somebody's decision, not a copy that went wrong. Failed results, or URLs rejected at enqueue,
  give exit status 1 (with or without ``--wait``).
- Printed URLs never carry their query string: a presigned URL's query is a credential.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import httpx

from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH
from bgchallenge.domain.progress import (
    Counts,
    ProgressPrinter,
    RateMeter,
    Tally,
    Transfer,
    UrlLine,
    enqueue_summary,
    eta_seconds,
    field_problems,
    final_report,
    parse_url_lines,
    progress_line,
    rejection_line,
)
from bgchallenge.domain.signing import sign

POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 10.0
PAGE_LIMIT = 500


class SubmitError(Exception):
    """The command cannot go on; ``str()`` is one clear line."""


class UsageError(SubmitError):
    """Bad arguments."""


class ServerUnreachable(SubmitError):
    """No answer: connection refused, name not found, timeout."""


class ServerRefused(SubmitError):
    """An answer the command cannot go on after."""


@dataclass(frozen=True)
class SubmitOptions:
    job_id: str
    server: str
    wait: bool
    lines: list[UrlLine]
    secret: str | None


def prepare(
    *,
    job_id: str,
    server: str | None,
    source: str | None,
    wait: bool,
    env: Mapping[str, str],
    port: int,
    secret: str | None,
    stdin: TextIO,
) -> SubmitOptions:
    """Check the arguments and read the URLs; raise `UsageError`."""
    if not 1 <= len(job_id) <= MAX_JOB_ID_LENGTH:
        raise UsageError(
            f"--job-id: must be 1 to {MAX_JOB_ID_LENGTH} characters, not {len(job_id)}"
        )
    if server is not None:
        base = _http_url("--server", server)
    elif env.get("BGC_SERVER", "").strip():
        base = _http_url("BGC_SERVER", env["BGC_SERVER"].strip())
    else:
        base = f"http://127.0.0.1:{port}"
    return SubmitOptions(job_id, base.rstrip("/"), wait, read_urls(source, stdin), secret)


def _http_url(name: str, raw: str) -> str:
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError for a port that is not a number 0-65535
        httpx.URL(raw)
    except (ValueError, httpx.InvalidURL) as exc:
        raise UsageError(f"{name}: not a valid URL: {raw!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{name}: not an http:// or https:// URL: {raw!r}")
    return raw


def read_urls(source: str | None, stdin: TextIO) -> list[UrlLine]:
    """The URLs of FILE, or of stdin for ``-`` or no FILE; raise `UsageError`."""
    name = "stdin" if source in (None, "-") else source
    try:
        if source in (None, "-"):
            if stdin.isatty():
                print("bgchallenge: reading URLs from stdin (end with Ctrl-D)", file=sys.stderr)
            text = stdin.read()
        else:
            with open(name, encoding="utf-8-sig") as file:  # editors on Windows add a BOM
                text = file.read()
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    return parse_url_lines(text)


@dataclass(frozen=True)
class Enqueued:
    result_id: int | None  # None: rejected
    created: bool = False
    problem: str = ""


@dataclass(frozen=True)
class JobSnapshot:
    items: list[dict[str, Any]]
    etag: str | None


class ApiClient:
    """The two calls ``submit`` makes, signed when a secret is given."""

    def __init__(
        self,
        server: str,
        secret: str | None,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT_SECONDS,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.server = server
        self.page_limit = page_limit
        self.secret = secret
        self.clock = clock
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def enqueue(self, job_id: str, url: str) -> Enqueued:
        body = json.dumps({"jobId": job_id, "url": url}).encode()
        response = self._send("POST", "/results/enqueue", body)
        if response.status_code == 202:
            return Enqueued(_member_id(response, "id"), created=True)
        if response.status_code == 409:
            return Enqueued(_member_id(response, "existingId"))
        if response.status_code == 400:
            return Enqueued(None, problem=field_problems(_json(response)))
        raise self._refused(response)

    def list_job(self, job_id: str, etag: str | None) -> JobSnapshot | None:
        """Every result of the job, walking all pages; None when ``etag`` is still current."""
        query = {"jobId": job_id, "limit": str(self.page_limit)}
        headers = {"If-None-Match": etag} if etag else {}
        items: list[dict[str, Any]] = []
        first_etag: str | None = None
        while True:
            response = self._send("GET", "/results/list?" + urlencode(query), headers=headers)
            if response.status_code == 304 and etag is not None:
                return None
            if response.status_code != 200:
                raise self._refused(response)
            page = _json(response)
            if not isinstance(page.get("items"), list):
                raise ServerRefused(f"{self.server} did not answer as a bgchallenge service")
            items.extend(page["items"])
            if first_etag is None:
                first_etag = response.headers.get("ETag")
            if not page.get("nextCursor"):
                return JobSnapshot(items, first_etag)
            # The first page's ETag covers the whole job; later pages are always read fresh.
            query["cursor"] = str(page["nextCursor"])
            headers = {}

    def _send(
        self, method: str, target: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        request = self._http.build_request(
            method, self.server + target, content=body or None, headers=dict(headers or {})
        )
        if body:
            request.headers["Content-Type"] = "application/json"
        if self.secret is not None:
            stamp = str(int(self.clock()))
            # Sign the target exactly as it goes on the wire, after httpx's own encoding.
            sent = request.url.raw_path.decode("ascii")
            request.headers["X-Bgc-Timestamp"] = stamp
            request.headers["X-Bgc-Signature"] = sign(self.secret, stamp, method, sent, body)
        try:
            return self._http.send(request)
        except httpx.TimeoutException:
            raise ServerUnreachable(f"{self.server}: no answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach {self.server}: {exc} (is the service running? see --server)"
            ) from None

    def _refused(self, response: httpx.Response) -> ServerRefused:
        request = response.request
        # hypercorn sends no reason phrase; name the status ourselves
        phrase = httpx.codes.get_reason_phrase(response.status_code)
        detail = ""
        if response.headers.get("Content-Type", "").endswith("json"):
            try:
                detail = str(response.json().get("detail", ""))
            except (ValueError, AttributeError):
                detail = ""
        line = (
            f"{request.method} {request.url.path} answered {response.status_code} {phrase}".rstrip()
        )
        line += f": {detail}" if detail else ""
        if response.status_code == 401:
            line += (
                " (set BGC_SIGNING_SECRET to the service's signing secret)"
                if self.secret is None
                else " (is BGC_SIGNING_SECRET the service's secret, and this clock right?)"
            )
        return ServerRefused(line)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        request = response.request
        raise ServerRefused(
            f"{request.method} {request.url.path} answered {response.status_code}"
            " without a JSON object: is this a bgchallenge service?"
        )
    return body


def _member_id(response: httpx.Response, name: str) -> int:
    value = _json(response).get(name)
    if not isinstance(value, int):
        raise ServerRefused(f"{response.request.url.path}: the answer has no integer {name!r}")
    return value


def enqueue_all(api: ApiClient, options: SubmitOptions, err: TextIO) -> Tally:
    enqueued = duplicates = rejected = 0
    for line in options.lines:
        answer = api.enqueue(options.job_id, line.url)
        if answer.result_id is None:
            rejected += 1
            print(rejection_line(line, answer.problem), file=err)
        elif answer.created:
            enqueued += 1
        else:
            duplicates += 1
    return Tally(enqueued, duplicates, rejected)


def wait_for_job(
    api: ApiClient,
    job_id: str,
    printer: ProgressPrinter,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Poll the job's results until all are terminal, showing progress; answer them."""
    meter = RateMeter()
    snapshot: JobSnapshot | None = None
    while True:
        polled_at = clock()
        fresh = api.list_job(job_id, snapshot.etag if snapshot else None)
        snapshot = fresh or snapshot
        assert snapshot is not None  # the first poll sends no If-None-Match: never a 304
        counts = Counts.of(str(item.get("status")) for item in snapshot.items)
        meter.add(polled_at, counts.done)
        rate = meter.rate()
        transfer = Transfer.of(snapshot.items)
        line = progress_line(counts, rate, eta_seconds(counts.remaining, rate), transfer)
        if counts.remaining == 0:
            printer.show(line, polled_at, final=True)
            return snapshot.items
        printer.show(line, polled_at)
        sleep(max(0.0, polled_at + POLL_SECONDS - clock()))


def submit(options: SubmitOptions, *, out: TextIO, err: TextIO) -> int:
    """Enqueue, report, and with ``wait`` follow the job to its end; answer the exit status.

    Raises `ServerUnreachable` or `ServerRefused` when it cannot go on.
    """
    with ApiClient(options.server, options.secret) as api:
        tally = enqueue_all(api, options, err)
        print(enqueue_summary(options.job_id, tally), file=out, flush=True)
        if not options.wait:
            return 1 if tally.rejected else 0

        def write(text: str) -> None:
            err.write(text)
            err.flush()

        items = wait_for_job(api, options.job_id, ProgressPrinter(write, err.isatty()))
    lines, failing = final_report(options.job_id, tally, items)
    print("\n".join(lines), file=out)
    return 1 if failing else 0
