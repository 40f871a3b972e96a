"""What a handler gets: who is asking (account, region), and the services it may use.

Handlers validate, write spec, enqueue the key for the reconciler and return a result shape.
They never start processes or containers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.reconciler.clock import Clock
from controlplane.settings import Settings
from controlplane.state.events import EventLog
from controlplane.state.records import ResourceKey
from controlplane.state.store import Store


@dataclass
class Services:
    store: Store
    events: EventLog
    clock: Clock
    settings: Settings
    enqueue: Callable[[ResourceKey], None]
    # Engine -> versions the runtime can run (for DescribeCacheEngineVersions and validation).
    available_versions: Callable[[], Mapping[str, Sequence[str]]]


@dataclass
class RequestContext:
    account: str
    region: str
    request_id: str
    services: Services

    def key(self, kind: str, resource_id: str) -> ResourceKey:
        return ResourceKey(kind, self.account, self.region, resource_id)


Params = dict[str, Any]
Result = dict[str, Any]
Handler = Callable[[RequestContext, Params], Result]
