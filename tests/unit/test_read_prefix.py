"""The pipeline's prefix for the content check: the first bytes, whatever the chunking, and
nothing lost of the rest."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from bgchallenge.work.pipeline import read_prefix


async def chunked(body: bytes, size: int) -> AsyncGenerator[bytes, None]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(
    ("length", "chunk", "expected"),
    [
        (0, 1, 0),
        (100, 1, 100),  # shorter than the bound: the whole body, once it ends
        (5000, 1, 4096),
        (5000, 3000, 5000),  # the chunk crossing the bound is kept whole
        (10000, 3000, 6000),
        (4096, 4096, 4096),
    ],
)
async def test_prefix_then_the_rest(length: int, chunk: int, expected: int) -> None:
    body = bytes(i % 256 for i in range(length))
    chunks = chunked(body, chunk)
    prefix = await read_prefix(chunks, 4096)
    rest = b"".join([piece async for piece in chunks])
    assert len(prefix) == expected
    assert prefix + rest == body
