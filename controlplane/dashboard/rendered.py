"""The overview's table of caches, rendered once per change of what it shows.

Every open page re-fetches the table on each message of the live feed, and with 100 caches the
table is most of a page's server time (reading every cache through the service layer, then
escaping a few thousand values). What it shows changes only when a record is written (a status,
an endpoint, a node) or a node's health or role changes, and both are told to listeners. So a
version moves on each of those, and the HTML is kept per (version, filter, host) until it moves:
ten open pages told of one change render the table once.

The version is read before the data, so a change made while rendering leaves an older version
beside the HTML and the next request renders again: a kept table is never newer than its
version, and never older than the last change told before it was rendered."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from controlplane.reconciler.health import HealthMonitor
from controlplane.state.records import Record, ResourceKey
from controlplane.state.store import Store

# A few filters (every account/region, and each one a page asked for): beyond that, the oldest go.
MAX_KEPT = 16

Key = tuple[Any, ...]


class ChangeVersion:
    """A number that moves whenever a record or a node's health or role changes."""

    def __init__(self, store: Store, health: HealthMonitor) -> None:
        self._value = 0
        self._lock = threading.Lock()
        store.listen(self._record_changed)
        health.listen(self._health_changed)

    @property
    def value(self) -> int:
        return self._value

    def _bump(self) -> None:
        with self._lock:
            self._value += 1

    def _record_changed(self, key: ResourceKey, record: Record | None) -> None:
        self._bump()

    def _health_changed(self, name: str, owner: ResourceKey, healthy: bool, role: str | None) -> None:
        self._bump()


class RenderedTables:
    """HTML kept by (filter, host) for the version it was rendered at."""

    def __init__(self, version: ChangeVersion) -> None:
        self._version = version
        self._kept: dict[Key, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: Key, render: Callable[[], str]) -> str:
        version = self._version.value  # before reading anything: see the module's docstring
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] == version:
            return kept[1]
        html = render()
        with self._lock:
            self._kept.pop(key, None)
            self._kept[key] = (version, html)
            while len(self._kept) > MAX_KEPT:
                del self._kept[next(iter(self._kept))]
        return html
