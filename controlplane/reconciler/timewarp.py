"""The admin time warp: move the service clock forward so that people and tests can watch
maintenance and snapshot windows fire, without skipping any.

Time moves in steps, stopping just inside every window start up to the target (1 s after it,
so `in_window` is true): there every resource is enqueued and the control loop is given until it
is idle (bounded) to act, as it would have had the time passed for real. Then the clock is set to
the target and everything is enqueued once more."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from controlplane.clock import Clock
from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.store import Store
from controlplane.windows import next_window_start

log = logging.getLogger("elasticache_local.timewarp")

MAX_ADVANCE = timedelta(days=400)
INSIDE = timedelta(seconds=1)  # where a stop puts the clock: just past the window's start


@dataclass(frozen=True)
class WindowStart:
    resource: str  # "<kind>/<id>"
    window: str
    start: datetime


@dataclass(frozen=True)
class Advanced:
    now: datetime
    offset: timedelta
    windows: list[WindowStart]


class Loop(Protocol):
    """What the time warp needs of the control loop (reconciler.controller.Controller)."""

    def enqueue_all(self) -> None: ...

    def wait_idle(self, timeout: float) -> bool: ...


class TimeWarp:
    def __init__(self, store: Store, controller: Loop, clock: Clock, step_timeout: float) -> None:
        self._store = store
        self._controller = controller
        self._clock = clock
        self._step_timeout = step_timeout
        self._lock = threading.Lock()  # one advance at a time: each computes its target from now

    def advance(self, seconds: float) -> Advanced:
        """Move the clock `seconds` forward (0 < seconds <= 400 days), stopping at each window start."""
        if not 0 < seconds <= MAX_ADVANCE.total_seconds():
            raise ValueError(f"seconds must be more than 0 and at most {MAX_ADVANCE.total_seconds():.0f} "
                             f"(400 days), not {seconds}")
        passed: list[WindowStart] = []
        with self._lock:
            cursor = self._clock.now()
            target = cursor + timedelta(seconds=seconds)
            while True:
                start, starting = self._next_starts(cursor)
                if start is None or start > target:  # a start at the target: the clock lands inside it
                    break
                self._move_to(min(start + INSIDE, target))
                passed += starting
                self._settle(start)
                cursor = start
            self._move_to(target)
            # Settled at the target too, so what a caller describes next is what the windows did
            # (e.g. the automatic backups pruned to the retention limit).
            self._settle(target)
            return Advanced(now=self._clock.now(), offset=self._clock.offset(), windows=passed)

    def windows(self) -> list[tuple[str, str]]:
        """(resource, window) for every window that fires: maintenance windows of groups and of
        clusters of no group (a member follows its group), snapshot windows where backups are kept."""
        found: list[tuple[str, str]] = []
        records: list[CacheCluster | ReplicationGroup] = [
            *(c for c in self._store.records(CacheCluster) if not c.spec.replication_group_id),
            *self._store.records(ReplicationGroup)]
        for rec in records:
            if rec.deleting():
                continue
            name = f"{rec.KIND}/{rec.id}"
            found.append((name, rec.spec.maintenance_window))
            if rec.spec.snapshot_retention_limit > 0 and rec.spec.snapshot_window:
                found.append((name, rec.spec.snapshot_window))
        return found

    def _next_starts(self, after: datetime) -> tuple[datetime | None, list[WindowStart]]:
        """The earliest window start after `after`, and every window that starts then."""
        starts: list[WindowStart] = []
        for name, window in self.windows():
            try:
                starts.append(WindowStart(name, window, next_window_start(window, after)))
            except ValueError:  # not a window (handlers validate them): it never fires, nor stops us
                log.warning("time warp: %s has an unreadable window %r", name, window)
        if not starts:
            return None, []
        first = min(s.start for s in starts)
        return first, [s for s in starts if s.start == first]

    def _move_to(self, when: datetime) -> None:
        delta = when - self._clock.now()
        if delta > timedelta():  # a slow stop may have let a real clock pass it already
            self._clock.advance(delta)

    def _settle(self, start: datetime) -> None:
        self._controller.enqueue_all()
        if not self._controller.wait_idle(self._step_timeout):
            log.warning("time warp: the control loop was not idle %.0f s after the windows starting at %s; "
                        "moving on", self._step_timeout, start.isoformat())
