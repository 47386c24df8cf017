"""The enqueue path's wire work per call, by the way the API's bodies are declared: decode and
validate an enqueue body, run the domain's rules on it, encode the 202 result.

- ``json module``: the domain's own parser (`json.loads`, a check per member; what the service
  did before the declaration, and still does to word the problems of a refused body), and
  `json.dumps` of the result as plain data;
- ``msgspec``: `bgchallenge.web.schema` as the service runs it (`decode_enqueue`, `result_json`);
- ``pydantic``: the same declaration as pydantic v2 models, when pydantic is installed
  (`pip install pydantic`): `model_validate_json`, then `model_dump_json`.

    python -m bench.declare [CALLS]
"""

from __future__ import annotations

import importlib
import json
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from bench.common import machine
from bgchallenge.domain.enqueue import MAX_JOB_ID_LENGTH, check_enqueue, parse_enqueue_body
from bgchallenge.domain.paths import MAX_URL_LENGTH
from bgchallenge.domain.results import Result, Status
from bgchallenge.web.schema import (
    ENQUEUE_DECODER,
    decode_enqueue,
    encode,
    render_result,
    result_body,
    result_json,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BODY = json.dumps(
    {
        "jobId": "job-2026-11-29-batch-17",
        "url": "https://bucket.s3.eu-west-1.amazonaws.com/photos/2026/11/cat.png"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261129%2Feu-west-1"
        "%2Fs3%2Faws4_request&X-Amz-Date=20261129T115500Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "a1" * 32,
    }
).encode()
RESULT = Result(
    id=123456,
    job_id="job-2026-11-29-batch-17",
    url="https://bucket.s3.eu-west-1.amazonaws.com/photos/2026/11/cat.png",
    object_path="/photos/2026/11/cat.png",
    status=Status.QUEUED,
    attempts=0,
    error=None,
    storage=None,
    created_at=datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC),
    updated_at=datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC),
    started_at=None,
    ended_at=None,
    canceled_at=None,
    url_expires_at=datetime(2026, 11, 29, 12, 55, tzinfo=UTC),
)


def stdlib() -> tuple[Callable[[], object], Callable[[], object]]:
    return (
        lambda: parse_enqueue_body(BODY, NOW),
        lambda: json.dumps(render_result(RESULT)).encode(),
    )


def with_msgspec() -> tuple[Callable[[], object], Callable[[], object]]:
    return (
        lambda: decode_enqueue(BODY, now=NOW, callbacks=False),
        lambda: result_json(RESULT),
    )


def with_pydantic() -> tuple[Callable[[], object], Callable[[], object]] | None:
    try:
        pydantic: Any = importlib.import_module("pydantic")
    except ImportError:
        return None
    config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    def member(kind: Any, alias: str, **limits: Any) -> Any:
        return (Annotated[kind, pydantic.Field(alias=alias, **limits)], ...)

    request = pydantic.create_model(
        "EnqueueRequest",
        __config__=config,
        job_id=member(str, "jobId", min_length=1, max_length=MAX_JOB_ID_LENGTH),
        url=member(str, "url", min_length=1, max_length=MAX_URL_LENGTH),
        callback_url=(
            Annotated[str | None, pydantic.Field(alias="callbackUrl", max_length=MAX_URL_LENGTH)],
            None,
        ),
    )
    # The result as the service shows it: the msgspec declaration's members, typed alike, built
    # from the same conversion of the domain's result (unvalidated, as an answer needs).
    nested = dict[str, Any] | None
    types: dict[str, Any] = {
        "id": int, "job_id": str, "url": str, "object_path": str, "status": str, "attempts": int,
        "error": nested, "storage": nested, "created_at": str, "updated_at": str,
        "started_at": str | None, "ended_at": str | None, "canceled_at": str | None,
        "duration_ms": int | None, "url_expires_at": str | None, "progress": nested,
        "callback": nested,
    }  # fmt: skip
    shown = result_body(RESULT)
    aliases = dict(zip(shown.__struct_fields__, shown.__struct_encode_fields__, strict=True))
    result_model = pydantic.create_model(
        "Result",
        __config__=config,
        **{name: member(kind, aliases[name]) for name, kind in types.items()},
    )

    def encode() -> bytes:
        body = result_body(RESULT)
        values = {name: getattr(body, name) for name in types}
        dumped: str = result_model.model_construct(**values).model_dump_json(by_alias=True)
        return dumped.encode()

    def decode() -> object:
        body = request.model_validate_json(BODY)
        return check_enqueue(
            body.job_id, body.url, body.callback_url, now=NOW, callbacks=False, callback_given=False
        )

    return decode, encode


def pydantic_wire() -> tuple[Callable[[], object], Callable[[], object]]:
    pydantic: Any = importlib.import_module("pydantic")
    functions = with_pydantic()
    assert functions is not None
    request = pydantic.create_model(
        "EnqueueRequest",
        __config__=pydantic.ConfigDict(extra="forbid"),
        jobId=(Annotated[str, pydantic.Field(min_length=1, max_length=MAX_JOB_ID_LENGTH)], ...),
        url=(Annotated[str, pydantic.Field(min_length=1, max_length=MAX_URL_LENGTH)], ...),
        callbackUrl=(str | None, None),
    )
    rendered = render_result(RESULT)
    result_model = pydantic.create_model(
        "Result",
        **{
            name: (type(value) if value is not None else Any, ...)
            for name, value in rendered.items()
        },
    )
    result = result_model(**rendered)
    return lambda: request.model_validate_json(BODY), lambda: result.model_dump_json().encode()


def per_call_us(function: Callable[[], object], calls: int) -> float:
    """The best of many short runs: on a shared machine, the run nothing else interrupted."""
    number = max(calls // 40, 1)
    best = min(timeit.repeat(function, number=number, repeat=40))
    return best / number * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    variants = {"json module": stdlib(), "msgspec": with_msgspec(), "pydantic": with_pydantic()}
    print(f"## Declaring the wire format ({datetime.now(UTC):%Y-%m-%d}, {machine()})\n")
    print("| per call, µs (best of 40) | decode + validate + domain rules | encode 202 | sum |")
    print("| --- | --- | --- | --- |")
    for name, functions in variants.items():
        if functions is None:
            print(f"| {name} | not installed | | |")
            continue
        decoder, encoder = functions
        assert decoder() is not None and encoder()
        decoding, encoding = per_call_us(decoder, calls), per_call_us(encoder, calls)
        print(f"| {name} | {decoding:.2f} | {encoding:.2f} | {decoding + encoding:.2f} |")
    print("\nThe wire work alone (no domain rules, no conversion from the domain's result):\n")
    print("| per call, µs (best of 40) | decode + validate the body | encode the result |")
    print("| --- | --- | --- |")
    rendered, shown = render_result(RESULT), result_body(RESULT)
    wire: dict[str, tuple[Callable[[], object], Callable[[], object]] | None] = {
        "json module": (lambda: json.loads(BODY), lambda: json.dumps(rendered).encode()),
        "msgspec": (lambda: ENQUEUE_DECODER.decode(BODY), lambda: encode(shown)),
        "pydantic": None if variants["pydantic"] is None else pydantic_wire(),
    }
    for name, functions in wire.items():
        if functions is not None:
            decoding, encoding = (per_call_us(function, calls) for function in functions)
            print(f"| {name} | {decoding:.2f} | {encoding:.2f} |")


if __name__ == "__main__":
    main()
