"""The content check's cost per call: this service's sniffer on a 4 KiB prefix of each accepted
type and of a few things it refuses, beside the PyPI libraries it was measured against
(``puremagic``, ``filetype``), when they are installed (`pip install puremagic filetype`).

    python -m bench.sniff [CALLS]
"""

from __future__ import annotations

import importlib
import sys
import timeit
from collections.abc import Callable

from bench.common import machine
from bgchallenge.domain.sniff import SNIFF_BYTES, sniff_image_type
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


if __name__ == "__main__":
    main()
