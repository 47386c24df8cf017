"""Live stream positions: visibility, event ids and what a stream sends of a batch."""

from datetime import UTC, datetime

import pytest

from bgchallenge.domain.listing import Snapshot
from bgchallenge.domain.results import Result, Status
from bgchallenge.domain.stream import (
    Batch,
    Change,
    OutOfOrder,
    StreamPosition,
    StreamState,
    decode_stream_position,
    encode_stream_position,
    sees,
    sees_all,
)

KEY = b"k"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def snap(text: str) -> Snapshot:
    return Snapshot.parse(text)


def change(writer: int, result_id: int, job: str = "j") -> Change:
    result = Result(
        result_id, job, "https://e.com/a.png", "/a.png", Status.QUEUED, 0, None, None,
        NOW, NOW, None, None, None,
    )  # fmt: skip
    return Change(writer, result)


def test_visibility_and_inclusion() -> None:
    assert sees(snap("10:20:12"), 11) and not sees(snap("10:20:12"), 12)
    assert not sees(snap("10:20:"), 20)
    assert sees_all(snap("15:25:"), snap("10:20:12"))
    assert not sees_all(snap("10:20:12"), snap("15:25:"))
    assert sees_all(snap("10:20:12"), snap("10:20:12,15"))
    assert not sees_all(snap("10:20:12,15"), snap("10:20:12"))
    # later's xmax below earlier's is fine if earlier sees none of the ids in between
    assert sees_all(snap("10:18:"), snap("10:20:18,19"))
    assert not sees_all(snap("10:18:"), snap("10:20:19"))


@pytest.mark.parametrize(
    "position",
    [
        StreamPosition(snap("10:20:12,15")),
        StreamPosition(snap("10:20:12"), snap("10:30:25"), (21, 7)),
    ],
)
def test_ids_round_trip_bound_to_the_filter(position: StreamPosition) -> None:
    text = encode_stream_position(KEY, "job", position)
    assert decode_stream_position(KEY, "job", text) == position
    assert decode_stream_position(KEY, None, text) is None
    assert decode_stream_position(b"other", "job", text) is None


def test_a_forged_cursor_is_refused() -> None:
    text = encode_stream_position(
        KEY, None, StreamPosition(snap("10:20:"), snap("10:30:"), (21, 7))
    )
    base, writer, result_id, until = text.split(".")
    assert (
        decode_stream_position(KEY, None, f"{base}.{writer}.{int(result_id) + 1}.{until}") is None
    )
    assert decode_stream_position(KEY, None, "a.b") is None


def test_a_batch_sends_its_matching_changes_with_ids_naming_what_was_sent() -> None:
    state = StreamState("j", snap("10:20:"))
    batch = Batch(
        snap("10:20:"), snap("10:30:"), (change(21, 5), change(22, 3, "x"), change(23, 1))
    )
    events = state.take(batch)
    assert [c.result.id for _, c in events] == [5, 1]
    assert events[0][0] == StreamPosition(snap("10:20:"), snap("10:30:"), (21, 5))
    assert events[1][0] == StreamPosition(snap("10:30:"))  # the last: the whole batch was sent
    assert state.base == snap("10:30:")


def test_changes_already_replayed_are_skipped() -> None:
    # replayed up to R = 25; the fan-out's batch started earlier, at 20
    state = StreamState(None, snap("25:25:"))
    batch = Batch(snap("20:20:"), snap("30:30:"), (change(21, 1), change(26, 2)))
    assert [c.result.id for _, c in state.take(batch)] == [2]
    assert state.take(Batch(snap("20:20:"), snap("24:24:"), (change(21, 1),))) == []


def test_a_batch_from_past_what_was_sent_ends_the_stream() -> None:
    state = StreamState(None, snap("20:20:"))
    with pytest.raises(OutOfOrder):
        state.take(Batch(snap("25:25:"), snap("30:30:"), (change(26, 1),)))
