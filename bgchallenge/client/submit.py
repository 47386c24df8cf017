"""``bgchallenge submit``: a small synchronous client of our own API.

Synchronous on purpose: the command does one thing at a time (enqueue line after line, then
follow the job), so a blocking `httpx.Client` is the simplest honest tool; no async code runs
here, which is why `time.sleep` paces the polls. All of the command's HTTP is in this module
(the stream's events are read by `httpx-sse`); what it shows is `bgchallenge.client.display`.

``--wait`` follows ``GET /results/stream?jobId=`` (Server-Sent Events). Gap-free start: a
stream without ``Last-Event-ID`` sends the changes after its ``ready`` event, so the list is
read *after* ``ready``: a result unchanged since is in the list, one changed since is (also) an
event, and events come in commit order, so the last word on each result is its latest state.
A dropped stream is resumed with ``Last-Event-ID`` (the service replays what changed since) up
to `STREAM_RESUMES` times in a row; a server without the stream (404/405), past its stream
limit (503) or answering anything else, falls back to polling the list with ``If-None-Match``.

Errors, each carrying one clear line for stderr::

    SubmitError
     ├── UsageError          bad arguments (job id, server URL, unreadable file): exit 2
     ├── ServerUnreachable   connection refused, name not found, no answer in time: exit 1
     └── ServerRefused       an answer the command cannot go on after (401, 5xx, not our API)

Choices where docs/http.md is silent:

- ``--wait`` waits for the results this run submitted: the ids it enqueued and the existing ids
  its ``409`` answers named. Other results of the job (enqueued earlier or by others) are not
  waited for, shown or counted.
- Canceled results are shown (progress and summary) but do not fail the command: a cancel is
  somebody's decision, not a copy that went wrong. Failed results, or URLs rejected at enqueue,
  give exit status 1 (with or without ``--wait``).
- Printed URLs never carry their query string: a presigned URL's query is a credential.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import httpx
import httpx_sse

from bgchallenge.client.display import (
    Tally,
    UrlLine,
    WaitDisplay,
    enqueue_summary,
    field_problems,
    parse_url_lines,
    print_report,
    rejection_line,
)
from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH
from bgchallenge.domain.results import TERMINAL
from bgchallenge.domain.signing import sign

POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 10.0
PAGE_LIMIT = 500
# The service sends a keep-alive at least every 15 s: a stream silent for longer is dead.
STREAM_READ_TIMEOUT_SECONDS = 40.0
STREAM_RESUMES = 3
RESUME_PAUSE_SECONDS = 0.2


class SubmitError(Exception):
    """The command cannot go on; ``str()`` is one clear line."""


class UsageError(SubmitError):
    """Bad arguments."""


class ServerUnreachable(SubmitError):
    """No answer: connection refused, name not found, timeout."""


class ServerRefused(SubmitError):
    """An answer the command cannot go on after."""


class StreamUnavailable(Exception):
    """The live stream cannot be followed (here, or any more): poll the list instead."""


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

    @contextmanager
    def stream(self, job_id: str, last_event_id: str | None) -> Iterator[httpx_sse.EventSource]:
        """The job's live results; raise `StreamUnavailable` when the server has no stream for
        us, `ServerRefused` for a 401 (signing is wrong for the stream as for everything)."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT_SECONDS)
        request = self._request(
            "GET", "/results/stream?" + urlencode({"jobId": job_id}), headers=headers
        )
        request.extensions["timeout"] = timeout.as_dict()
        # a transport error is left to the caller: a restarting service may be back shortly
        response = self._http.send(request, stream=True)
        try:
            if response.status_code == 401:
                response.read()
                raise self._refused(response)
            if response.status_code != 200:
                raise StreamUnavailable(f"the stream answered {response.status_code}")
            yield httpx_sse.EventSource(response)
        finally:
            response.close()

    def _request(
        self, method: str, target: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Request:
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
        return request

    def _send(
        self, method: str, target: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        request = self._request(method, target, body, headers)
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


@dataclass(frozen=True)
class Submitted:
    tally: Tally
    ids: frozenset[int]  # enqueued, or named by a 409: what ``--wait`` waits for


def enqueue_all(api: ApiClient, options: SubmitOptions, err: TextIO) -> Submitted:
    enqueued = duplicates = rejected = 0
    ids: set[int] = set()
    for line in options.lines:
        answer = api.enqueue(options.job_id, line.url)
        if answer.result_id is None:
            rejected += 1
            print(rejection_line(line, answer.problem), file=err)
            continue
        ids.add(answer.result_id)
        if answer.created:
            enqueued += 1
        else:
            duplicates += 1
    return Submitted(Tally(enqueued, duplicates, rejected), frozenset(ids))


Results = dict[int, dict[str, Any]]


def _all_terminal(results: Results, ids: frozenset[int]) -> bool:
    return all(str(results.get(i, {}).get("status")) in TERMINAL for i in ids)


def _ours(items: Iterable[dict[str, Any]], ids: frozenset[int]) -> Results:
    return {item["id"]: item for item in items if item.get("id") in ids}


def follow_stream(
    api: ApiClient,
    job_id: str,
    ids: frozenset[int],
    display: WaitDisplay,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Results:
    """Follow the job's stream until every result of ``ids`` is terminal; answer their states.

    Raises `StreamUnavailable` when the stream cannot be had, or is lost (or cannot be
    reopened) `STREAM_RESUMES` + 1 times in a row without a result event in between.
    """
    results: Results = {}
    position: str | None = None
    listed = False
    losses = 0
    while True:
        try:
            with api.stream(job_id, position) as source:
                for event in source.iter_sse():
                    if event.event == "ready" and not listed:
                        # after `ready`: every change since is an event, so nothing falls between
                        snapshot = api.list_job(job_id, None)
                        assert snapshot is not None  # no If-None-Match: never a 304
                        results.update(_ours(snapshot.items, ids))
                        listed = True
                    elif event.event == "result":
                        losses = 0  # a stream that only ever says `ready` is not followed forever
                        item = event.json()
                        if isinstance(item, dict) and item.get("id") in ids:
                            results[item["id"]] = item
                    if event.id and (event.event != "ready" or position is None):
                        # A resumed stream's `ready` may name a position past the replay that
                        # follows it: taking it, a drop mid-replay would skip the rest.
                        position = event.id
                    if not listed:
                        continue
                    if _all_terminal(results, ids):
                        display.show(results.values(), final=True)
                        return results
                    display.show(results.values())
        except httpx_sse.SSEError:
            raise StreamUnavailable("the stream is not an event stream") from None
        except (httpx.TransportError, ValueError):
            pass  # lost mid-stream, or an event that is not JSON: resume, a few times
        # a stream that ends (the service shutting down gracefully) is resumed the same way
        losses += 1
        if losses > STREAM_RESUMES:
            raise StreamUnavailable("the stream was lost")
        sleep(RESUME_PAUSE_SECONDS * losses)  # a service restarting gets a moment


def poll_list(
    api: ApiClient,
    job_id: str,
    ids: frozenset[int],
    display: WaitDisplay,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Results:
    """Poll the job's list until every result of ``ids`` is terminal; answer their states."""
    snapshot: JobSnapshot | None = None
    while True:
        polled_at = clock()
        fresh = api.list_job(job_id, snapshot.etag if snapshot else None)
        snapshot = fresh or snapshot
        assert snapshot is not None  # the first poll sends no If-None-Match: never a 304
        results = _ours(snapshot.items, ids)
        if _all_terminal(results, ids):
            display.show(results.values(), final=True)
            return results
        display.show(results.values())
        sleep(max(0.0, polled_at + POLL_SECONDS - clock()))


def wait_for(
    api: ApiClient, job_id: str, ids: frozenset[int], display: WaitDisplay, *, stream: bool = True
) -> list[dict[str, Any]]:
    """The submitted results once all are terminal, in id order: followed live when the
    service streams, else polled."""
    results: Results | None = None
    if not ids:  # every line rejected: nothing to wait for
        display.show([], final=True)
        return []
    if stream:
        try:
            results = follow_stream(api, job_id, ids, display)
        except StreamUnavailable:
            results = None
    if results is None:
        results = poll_list(api, job_id, ids, display)
    return [results[i] for i in sorted(ids)]


def submit(options: SubmitOptions, *, out: TextIO, err: TextIO) -> int:
    """Enqueue, report, and with ``wait`` follow the job to its end; answer the exit status.

    Raises `ServerUnreachable` or `ServerRefused` when it cannot go on.
    """
    with ApiClient(options.server, options.secret) as api:
        submitted = enqueue_all(api, options, err)
        tally = submitted.tally
        print(enqueue_summary(options.job_id, tally), file=out, flush=True)
        if not options.wait:
            return 1 if tally.rejected else 0
        with WaitDisplay(err, len(submitted.ids)) as display:
            items = wait_for(api, options.job_id, submitted.ids, display)
    failing = print_report(out, options.job_id, tally, items)
    return 1 if failing else 0
