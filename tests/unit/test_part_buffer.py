"""A part's bytes read back whole and in order, in memory or spilled to its temporary file."""

from __future__ import annotations

import pytest
import trio

from bgchallenge.storage.upload import PartBuffer


@pytest.mark.parametrize("memory_limit", [10, 7, 1000])
async def test_a_part_reads_back_whole_wherever_it_was_kept(memory_limit: int) -> None:
    chunks = [bytes([n]) * 7 for n in range(6)]
    part = PartBuffer(memory_limit=memory_limit)
    try:
        for chunk in chunks:
            await part.write(chunk)
        first = await trio.to_thread.run_sync(lambda: part.rewound().read())
        again = await trio.to_thread.run_sync(lambda: part.rewound().read())
    finally:
        await part.aclose()
    assert first == again == b"".join(chunks)
    assert part.size == 42
