"""A value recomputed at most once per ``max_age`` seconds, shared by concurrent callers.

For the unauthenticated operations routes (``/health``, ``/metrics``): however many requests
arrive, the backends see at most one computation in flight and about one per ``max_age``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Flight(Generic[T]):
    """One computation in progress; callers arriving meanwhile wait for its value."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: tuple[T] | None = None  # None: cancelled or raised


class Recent(Generic[T]):
    """``await recent()`` answers a value computed at most ``max_age`` seconds ago.

    The caller that finds the value stale computes it in its own task, so there is no
    background task to own; callers arriving meanwhile wait for that computation and share its
    value. If it is cancelled or raises, nothing is kept and one of the waiters computes anew.
    """

    def __init__(self, compute: Callable[[], Awaitable[T]], max_age: float) -> None:
        self._compute = compute
        self._max_age = max_age
        self._latest: tuple[float, T] | None = None  # (when computed, value)
        self._flight: _Flight[T] | None = None

    async def __call__(self) -> T:
        while True:
            latest = self._latest
            if latest is not None and trio.current_time() - latest[0] <= self._max_age:
                return latest[1]
            flight = self._flight
            if flight is None:
                return await self._lead()
            await flight.done.wait()
            if flight.value is not None:
                return flight.value[0]

    async def _lead(self) -> T:
        flight = self._flight = _Flight[T]()
        try:
            value = await self._compute()
            self._latest = (trio.current_time(), value)
            flight.value = (value,)
            return value
        finally:
            self._flight = None
            flight.done.set()
