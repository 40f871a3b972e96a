"""Time, injectable: the real clock by default, a fake one in tests and for the admin time warp."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (what AWS timestamps and windows use)."""
        ...

    def monotonic(self) -> float:
        """Seconds for measuring intervals (probe timeouts, backoff)."""
        ...

    def advance(self, delta: timedelta) -> None:
        """Move wall-clock time forward (the admin time warp: reach a window now)."""
        ...

    def offset(self) -> timedelta:
        """How far advance() has moved this clock in all."""
        ...


class RealClock:
    """Real time, plus an offset an admin can add to reach a maintenance or backup window now."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.now(UTC) + offset

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    def offset(self) -> timedelta:
        with self._lock:
            return self._offset


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._start = self._now
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, delta: timedelta | float) -> None:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            self._mono += step.total_seconds()

    def offset(self) -> timedelta:
        with self._lock:
            return self._now - self._start
