"""GET /results/stream: one listener and one fan-out per process, one bounded channel per stream.

The listener hears each commit that changes a result (migration 0008) and wakes the fan-out,
which reads every change since its last position in ONE query for the whole process and sends
that batch to each open stream's channel without waiting: a stream whose channel is full is
closed (its client resumes with Last-Event-ID), so a slow reader holds at most
``STREAM_BUFFER`` batches, never more. What each stream sends of a batch, and the ids of its
events, are decided in domain/stream.py. The listener runs only while streams are open (and a
little after): a process nobody follows is not woken by every change.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import trio

from bgchallenge.db.database import Database, DatabaseUnavailable
from bgchallenge.db.listener import serve_listener
from bgchallenge.db.repository import Results
from bgchallenge.domain.listing import Snapshot
from bgchallenge.domain.stream import (
    KEEP_ALIVE,
    Batch,
    OutOfOrder,
    StreamPosition,
    StreamState,
    encode_stream_position,
    sse_event,
)
from bgchallenge.web.schema import result_json

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "bgc_changes"
# Batches a stream may have waiting; each is shared by every stream, so this bounds only how
# far behind a reader may fall before it is closed.
STREAM_BUFFER = 16
RETRY_SECONDS = 1.0
# The listener runs only while streams are open: a process without any would otherwise be woken
# by every commit that changes a result (beside busy workers, about 1 ms of a web process's CPU
# per result; docs/benchmarks.md). It starts with the first stream and stops this long after
# the last one ends, so that clients reconnecting find it still there.
LISTEN_LINGER_SECONDS = 30.0
# How long a new stream waits for the listener's LISTEN (the database may be out of reach).
LISTEN_WAIT_SECONDS = 5.0


class StreamsFull(Exception):
    pass


class Subscription:
    def __init__(self, since: Snapshot) -> None:
        self.since = since  # the first batch this stream gets starts here
        self.send, self.receive = trio.open_memory_channel[Batch](STREAM_BUFFER)


class StreamHub:
    def __init__(
        self,
        results: Results,
        cursor_key: bytes,
        *,
        max_streams: int,
        keep_alive_seconds: float,
    ) -> None:
        self.results = results
        self.cursor_key = cursor_key
        self.max_streams = max_streams
        self.keep_alive_seconds = keep_alive_seconds
        self.open_streams = 0
        self.closed_slow = 0  # streams closed because their reader fell behind
        self._subscriptions: set[Subscription] = set()
        self._position: Snapshot | None = None  # None: nobody listens, so nothing is read
        self._changed = trio.Event()
        self._shutdown = trio.Event()
        self._listening = trio.Event()  # set while LISTEN is in place
        self._streams_counted = trio.Event()  # set when open_streams changes

    async def serve(
        self,
        database: Database,
        shutdown: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen (while streams are open) and fan out until ``shutdown`` (or cancelled); then
        end every stream."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen_while_streams_open, database)
            nursery.start_soon(self._fan_out)
            task_status.started()
            await shutdown.wait()
            self._shutdown.set()
            for subscription in list(self._subscriptions):
                self._drop(subscription)
            nursery.cancel_scope.cancel()  # no stream opens from now on: nothing to listen for

    def _wake(self) -> None:
        self._changed.set()  # the current event: _fan_out replaces it after each wake-up

    def _count_stream(self, delta: int) -> None:
        self.open_streams += delta
        self._streams_counted.set()

    async def _until_streams_open(self, wanted: bool) -> None:
        """Wait until some stream is open (``wanted``) or none is."""
        while bool(self.open_streams) is not wanted:
            self._streams_counted = trio.Event()
            await self._streams_counted.wait()

    async def _listen_while_streams_open(self, database: Database) -> None:
        while True:
            await self._until_streams_open(True)
            async with trio.open_nursery() as listening:
                await listening.start(
                    serve_listener,
                    database,
                    [CHANGES_CHANNEL],
                    self._wake,  # after a reconnect, read what a lost NOTIFY announced
                    lambda channel, payload: self._wake(),
                )
                self._listening.set()
                while self.open_streams:
                    await self._until_streams_open(False)
                    with trio.move_on_after(LISTEN_LINGER_SECONDS):
                        await self._until_streams_open(True)
                # No stream for the whole linger: no await from here to the new event, so a
                # stream opening now waits for the next LISTEN.
                self._listening = trio.Event()
                listening.cancel_scope.cancel()

    async def _fan_out(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            if self._position is None or not self._subscriptions:
                continue
            try:
                batch = await self.results.changes_since(None, StreamPosition(self._position))
            except DatabaseUnavailable as exc:
                log.warning("stream fan-out: database unavailable", extra={"error": str(exc)})
                await trio.sleep(RETRY_SECONDS)
                self._wake()
                continue
            # No await from here on: a stream subscribing now starts at the new position.
            self._position = batch.until if self._subscriptions else None
            for subscription in list(self._subscriptions):
                try:
                    subscription.send.send_nowait(batch)
                except trio.WouldBlock:
                    self.closed_slow += 1
                    log.info("stream closed: its reader fell behind")
                    self._drop(subscription)
                except trio.BrokenResourceError:
                    self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.send.close()
        if not self._subscriptions:
            self._position = None

    def check_room(self) -> None:
        """Raise `StreamsFull` at the limit (or shutting down).

        Streams are counted from their body's start to its end: a body that never starts (its
        client left before) never counts, so no count can leak; requests arriving in the same
        instant may pass the check together, bounded by the connections being accepted."""
        if self.open_streams >= self.max_streams or self._shutdown.is_set():
            raise StreamsFull

    async def _subscribe(self) -> Subscription:
        # Listening before the position is read: no change after it goes unheard.
        with trio.move_on_after(LISTEN_WAIT_SECONDS):
            await self._listening.wait()
        if not self._listening.is_set():
            raise DatabaseUnavailable("the listener for changes could not connect")
        if self._position is None:
            current = await self.results.current_snapshot()
            if self._position is None:  # another stream may have set it meanwhile
                self._position = current
        subscription = Subscription(self._position)
        self._subscriptions.add(subscription)
        if self._shutdown.is_set():  # shut down while this stream was starting: end it
            self._drop(subscription)
        return subscription

    async def events(
        self, job_id: str | None, resume: StreamPosition | None
    ) -> AsyncIterator[bytes]:
        """The stream's body. Subscribe first, then read the replay: the live batches then
        start no later than the replay's snapshot."""
        self._count_stream(+1)
        try:
            try:
                subscription = await self._subscribe()
            except DatabaseUnavailable as exc:
                # The headers are gone: end the body, before its ready event; the client
                # reconnects as it does after any drop.
                log.warning("stream closed: database unavailable", extra={"error": str(exc)})
                return
            try:
                async for chunk in self._follow(subscription, job_id, resume):
                    yield chunk
            finally:
                self._drop(subscription)
                subscription.receive.close()
        finally:
            self._count_stream(-1)

    async def _follow(
        self, subscription: Subscription, job_id: str | None, resume: StreamPosition | None
    ) -> AsyncIterator[bytes]:
        if resume is None:
            state = StreamState(job_id, subscription.since)
            event_id = encode_stream_position(
                self.cursor_key, job_id, StreamPosition(subscription.since)
            )
            yield sse_event("ready", event_id, b"{}")
        else:
            # ready names what the client has: its own position, until the replay is sent
            yield sse_event("ready", encode_stream_position(self.cursor_key, job_id, resume), b"{}")
            state = StreamState(job_id, resume.base)
            try:
                replay = await self.results.changes_since(job_id, resume)
            except DatabaseUnavailable as exc:
                log.warning("stream closed: database unavailable", extra={"error": str(exc)})
                return  # its client resumes from the same id
            for chunk in self._render(state, replay, job_id):
                yield chunk
        # Keep-alive counts from the last bytes written: batches this filter sends nothing of
        # do not keep a connection alive.
        written = trio.current_time()
        while True:
            batch: Batch | None = None
            try:
                with trio.move_on_at(written + self.keep_alive_seconds):
                    batch = await subscription.receive.receive()
            except trio.EndOfChannel:
                return  # shutdown, or this reader fell behind
            if batch is None:
                yield KEEP_ALIVE
                written = trio.current_time()
                continue
            try:
                chunks = self._render(state, batch, job_id)
            except OutOfOrder:
                log.warning("stream closed: a batch out of order")
                return
            for chunk in chunks:
                yield chunk
            if chunks:
                written = trio.current_time()

    def _render(self, state: StreamState, batch: Batch, job_id: str | None) -> list[bytes]:
        chunks = []
        for position, change in state.take(batch):
            chunk = batch.encoded.get((job_id, position))
            if chunk is None:
                event_id = encode_stream_position(self.cursor_key, job_id, position)
                chunk = sse_event("result", event_id, result_json(change.result))
                batch.encoded[(job_id, position)] = chunk
            chunks.append(chunk)
        return chunks
