"""The clock background work reads: the wall clock in production, a hand-driven one in tests.

Every scheduling decision (a delayed job, a retry, a periodic sweep, "is this CommunicationRequest due?") asks the
clock, never ``time.time()`` directly, so that a test can move time forward and watch what becomes due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...

    def wait_s(self, until: float) -> float | None:
        """How long a scheduler may sleep before ``until`` is reached (None: until the clock is moved)."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the clock jumps (a hand-driven clock; the wall clock never calls it)."""
        ...


def as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SystemClock:
    def now(self) -> float:
        return time.time()

    def wait_s(self, until: float) -> float | None:
        return max(0.0, until - time.time())

    def subscribe(self, callback: Callable[[], None]) -> None:
        return None


class ManualClock:
    """A clock that stands still until ``advance``/``set`` moves it (tests)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def wait_s(self, until: float) -> float | None:
        return 0.0 if until <= self._now else None

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def advance(self, seconds: float) -> float:
        return self.set(self._now + seconds)

    def set(self, epoch: float) -> float:
        if epoch < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = epoch
        for callback in list(self._listeners):
            callback()
        return self._now
