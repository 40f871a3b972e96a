"""A work queue of resource keys, in the manner of client-go's: a key is queued at most once,
never processed by two workers at once, and a key added while it is being processed is
processed again afterwards (so no change is lost between a read and a write)."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._now = monotonic
        self._cond = threading.Condition()
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._counter = 0
        self._closed = False
        self._failures: dict[K, int] = {}

    def add(self, key: K) -> None:
        with self._cond:
            if self._closed or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._counter += 1
            heapq.heappush(self._delayed, (self._now() + delay, self._counter, key))
            self._cond.notify()

    def backoff(self, key: K, base: float, cap: float = 30.0) -> float:
        """Delay for a key's next retry: base doubled per consecutive failure, capped."""
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        return float(min(cap, base * (2.0**n)))

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def _promote_due(self) -> float | None:
        """Move due delayed keys to ready; return seconds until the next one, if any."""
        now = self._now()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._ready.append(key)
        return self._delayed[0][0] - now if self._delayed else None

    def get(self, timeout: float | None = None) -> K | None:
        """Next key to process, or None on timeout or shutdown. Pair with done(key)."""
        deadline = None if timeout is None else self._now() + timeout
        with self._cond:
            while True:
                if self._closed:
                    return None
                wait = self._promote_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if deadline is not None:
                    left = deadline - self._now()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                # Bounded wait: a fake clock's time moves without notifying us.
                self._cond.wait(0.05 if wait is None else min(max(wait, 0.001), 0.05))

    def get_nowait(self) -> K | None:
        with self._cond:
            self._promote_due()
            if not self._ready:
                return None
            key = self._ready.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no key is ready, delayed or being processed: True then, False when `timeout`
        seconds pass first. Real seconds: a fake clock does not move while we wait."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if not self._ready and not self._delayed and not self._processing:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                # Bounded slices: done() notifies one waiter, maybe a worker rather than us.
                self._cond.wait(min(left, 0.05))

    def pending(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
