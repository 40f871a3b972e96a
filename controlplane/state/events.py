"""The event log behind DescribeEvents: written by the reconciler (and admin actions).
Listeners (`listen`: the live feed) hear of each event once it is stored."""

from __future__ import annotations

import logging
from collections.abc import Callable

from controlplane.clock import Clock
from controlplane.state.records import Event
from controlplane.state.store import Store

log = logging.getLogger("elasticache_local.events")


class EventLog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._listeners: list[Callable[[Event], None]] = []

    def listen(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every event after it is stored (from the emitter's thread)."""
        self._listeners.append(listener)

    def emit(self, account: str, region: str, source_type: str, source_id: str, message: str) -> None:
        event = Event(account=account, region=region, source_type=source_type, source_id=source_id,
                      message=message, date=self._clock.now())
        self._store.add_event(event)
        log.info("%s %s: %s", source_type, source_id, message)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # the feed's trouble is never the emitter's
                log.exception("event listener failed")
