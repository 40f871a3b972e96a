"""The event log behind DescribeEvents: written by the reconciler (and admin actions)."""

from __future__ import annotations

import logging

from controlplane.clock import Clock
from controlplane.state.records import Event
from controlplane.state.store import Store

log = logging.getLogger("elasticache_local.events")


class EventLog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def emit(self, account: str, region: str, source_type: str, source_id: str, message: str) -> None:
        self._store.add_event(
            Event(account=account, region=region, source_type=source_type, source_id=source_id,
                  message=message, date=self._clock.now())
        )
        log.info("%s %s: %s", source_type, source_id, message)
