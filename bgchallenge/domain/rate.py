"""The slowest body an origin may send: at least ``min_bytes`` in every ``window`` seconds."""

from __future__ import annotations


class RateFloor:
    """Counts bytes per window of ``window`` seconds, on a clock the caller advances.

    ``received`` answers False once a whole window has passed with fewer than ``min_bytes``.
    The window still running is never judged, so a short body's last bytes are never too few.
    A floor of 0 bytes or a window of 0 seconds checks nothing.
    """

    def __init__(self, min_bytes: int, window: float, now: float = 0.0) -> None:
        self.min_bytes = min_bytes
        self.window = window
        self.window_end = now + window
        self.in_window = 0

    def received(self, count: int, now: float) -> bool:
        if self.min_bytes <= 0 or self.window <= 0:
            return True
        while now >= self.window_end:  # at most twice: an empty window fails
            if self.in_window < self.min_bytes:
                return False
            self.window_end += self.window
            self.in_window = 0
        self.in_window += count
        return True
