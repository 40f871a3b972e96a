"""What a handler gets: who is asking (account, region), and the services it may use.

A handler takes the context and its operation's typed request (controlplane.model.messages),
validates, writes spec, enqueues the key for the reconciler and returns its typed response.
Handlers never start processes or containers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.clock import Clock
from controlplane.model.operations import Handlers
from controlplane.objectstore import ObjectStore
from controlplane.protocol.serializer import FrozenShape
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
    # (engine, full version) -> the TLS modes its nodes can serve (NodeRuntime.tls_modes).
    tls_modes: Callable[[str, str], tuple[str, ...]]
    # Where exports go and SnapshotArns restores come from (an S3 server, or local directories).
    objects: ObjectStore
    # Rendered API shapes by (record id, variant). Records are never mutated once stored (an
    # update stores a new object), so an entry is valid while it holds the same object. Frozen,
    # so the serializer also writes each one's XML only once.
    shape_cache: dict[tuple[int, bool], tuple[Any, FrozenShape]] = field(default_factory=dict)

    def cached_shape(self, record: Any, variant: bool, render: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = (id(record), variant)
        hit = self.shape_cache.get(key)
        if hit is not None and hit[0] is record:
            return hit[1]
        shape = FrozenShape(render())
        if len(self.shape_cache) > 8192:
            self.shape_cache.clear()
        self.shape_cache[key] = (record, shape)
        return shape

    def context(self, account: str, region: str, request_id: str | None = None) -> RequestContext:
        """A request's context, for callers that are not the Query route (the JSON API)."""
        return RequestContext(account, region, request_id or str(uuid.uuid4()), self)


@dataclass
class RequestContext:
    account: str
    region: str
    request_id: str
    services: Services

    def key(self, kind: str, resource_id: str) -> ResourceKey:
        return ResourceKey(kind, self.account, self.region, resource_id)


# The operation name -> handler table, typed per operation (controlplane/model/operations.py).
HandlerTable = Handlers[RequestContext]
# A handler as the Query route calls it: the parser's reading of the request, which the model's
# shapes (so the operation's request type) describe; the response as the serializer takes it.
AnyHandler = Callable[[RequestContext, Any], Mapping[str, Any] | None]
