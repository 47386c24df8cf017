"""A part's bytes read back whole and in order, in memory or spilled to its temporary file."""

from __future__ import annotations

import pytest
import trio

from bgchallenge.storage.upload import PartBuffer


@pytest.mark.parametrize(
    ("memory_limit", "spill_block", "spilled"), [(10, 1, True), (7, 20, True), (1000, 1, False)]
)
async def test_a_part_reads_back_whole_wherever_it_was_kept(
    memory_limit: int, spill_block: int, spilled: bool
) -> None:
    chunks = [bytes([n]) * 7 for n in range(6)]
    part = PartBuffer(memory_limit=memory_limit, spill_block=spill_block)
    try:
        for chunk in chunks:
            await part.write(chunk)

        async def read_back() -> bytes:
            body = await part.body()
            if isinstance(body, bytes):
                return body
            return await trio.to_thread.run_sync(body.read)

        first = await read_back()
        again = await read_back()  # a retried upload reads it again
        assert isinstance(await part.body(), bytes) is not spilled
    finally:
        await part.aclose()
    assert first == again == b"".join(chunks)
    assert part.size == 42
