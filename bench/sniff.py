"""The content check's cost per call: this service's sniffer on a 4 KiB prefix of each accepted
type and of a few things it refuses, beside the PyPI libraries it was measured against
(``puremagic``, ``filetype``), when they are installed (`pip install puremagic filetype`).
Then its cost per result in the pipeline, in one run: a 50 KiB body (bench.throughput's) in
16 KiB chunks consumed as the upload consumes it, straight and through the content check
(prefix, sniff, prefix put back in front).

    python -m bench.sniff [CALLS]
"""

from __future__ import annotations

import importlib
import sys
import time
import timeit
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import trio

from bench.common import machine
from bgchallenge.domain.sniff import SNIFF_BYTES, sniff_image_type
from bgchallenge.work.pipeline import _prepended, read_prefix
from tests.support.images import samples

REFUSED = {
    "html": b"<!DOCTYPE html>\n<html><head><title>x</title></head><body>" + b" " * SNIFF_BYTES,
    "svg after 3.5 KiB of comment": b"<?xml version='1.0'?><!--" + b"x" * 3500 + b"--><svg/>",
}


def per_call_us(function: Callable[[bytes], object], data: bytes, calls: int) -> float:
    prefix = data[:SNIFF_BYTES]
    return timeit.timeit(lambda: function(prefix), number=calls) / calls * 1e6


def libraries() -> dict[str, Callable[[bytes], object]]:
    found: dict[str, Callable[[bytes], object]] = {"bgchallenge": sniff_image_type}
    try:
        puremagic = importlib.import_module("puremagic")

        def by_puremagic(data: bytes) -> object:
            try:
                return puremagic.from_string(data, mime=True)
            except puremagic.PureError:
                return None

        found["puremagic"] = by_puremagic
    except ImportError:
        pass
    try:
        filetype = importlib.import_module("filetype")
        found["filetype"] = filetype.guess_mime
    except ImportError:
        pass
    return found


BODY = samples()["png"][0] + bytes(50 * 1024)
CHUNK = 16 * 1024


async def body_chunks() -> AsyncGenerator[bytes, None]:
    for start in range(0, len(BODY), CHUNK):
        yield BODY[start : start + CHUNK]


async def consume(chunks: AsyncIterator[bytes]) -> int:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
    return size


async def straight() -> None:
    async with aclosing(body_chunks()) as chunks:
        await consume(chunks)


async def checked() -> None:
    async with aclosing(body_chunks()) as chunks:
        prefix = await read_prefix(chunks, SNIFF_BYTES)
        assert sniff_image_type(prefix[:SNIFF_BYTES]) == "image/png"
        async with aclosing(_prepended(prefix, chunks)) as body:
            await consume(body)


async def per_result_us(variant: Callable[[], Awaitable[None]], results: int) -> float:
    started = time.perf_counter()
    for _ in range(results):
        await variant()
    return (time.perf_counter() - started) / results * 1e6


async def pipeline_cost(results: int) -> None:
    # alternated, best of 5 each: the machine is shared
    runs: dict[str, list[float]] = {"straight": [], "checked": []}
    for _ in range(5):
        runs["straight"].append(await per_result_us(straight, results))
        runs["checked"].append(await per_result_us(checked, results))
    best = {name: min(times) for name, times in runs.items()}
    print(f"\n## content check per result, 50 KiB in 16 KiB chunks, best of 5 x {results}\n")
    print("| body consumed | µs per result |")
    print("| --- | --- |")
    print(f"| straight (no check) | {best['straight']:.1f} |")
    print(f"| through the content check | {best['checked']:.1f} |")
    print(f"| the check's cost | {best['checked'] - best['straight']:.1f} |")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    inputs = {name: data for name, (data, _) in samples().items()}
    inputs.update(REFUSED)
    sniffers = libraries()
    print(f"## content check per call: µs (answer), {calls} calls each ({machine()})\n")
    print("| input | " + " | ".join(sniffers) + " |")
    print("| --- |" + " --- |" * len(sniffers))
    for name, data in inputs.items():
        cells = [
            f"{per_call_us(sniff, data, calls):.1f} ({sniff(data[:SNIFF_BYTES])})"
            for sniff in sniffers.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    trio.run(pipeline_cost, calls)


if __name__ == "__main__":
    main()
