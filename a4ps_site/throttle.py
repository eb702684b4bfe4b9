"""Throttled live updates: streamed tokens and progress reach pages a few times a second, not per item."""
from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings


def live_interval_s() -> float:
    """How often a stream or a progress bar may update a page (settings.LIVE_UPDATE_INTERVAL_S)."""
    return float(settings.LIVE_UPDATE_INTERVAL_S)


class Throttle:
    """Says yes at most once every `interval_s` seconds; the first call and forced calls always pass."""

    def __init__(self, interval_s: float | None = None) -> None:
        self.interval_s = live_interval_s() if interval_s is None else interval_s
        self.last: float | None = None

    def ready(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if force or self.last is None or now - self.last >= self.interval_s:
            self.last = now
            return True
        return False


class TextStream:
    """Collects text pieces and hands them on in batches: `send(text, first)` at most every interval.

    `before_send` runs before each batch leaves (e.g. a cancellation check that raises)."""

    def __init__(self, send: Callable[[str, bool], None], *, interval_s: float | None = None,
                 before_send: Callable[[], None] | None = None) -> None:
        self.send = send
        self.before_send = before_send
        self.throttle = Throttle(interval_s)
        self.buffer: list[str] = []
        self.first = True

    def __call__(self, piece: str) -> None:
        self.buffer.append(piece)
        if self.throttle.ready():
            if self.before_send is not None:
                self.before_send()
            self.flush()

    def flush(self) -> None:
        """Send what is buffered now (at the end of a contribution, or before a phase change)."""
        if self.buffer:
            self.send("".join(self.buffer), self.first)
            self.first = False
            self.buffer = []
        self.throttle.last = time.monotonic()
