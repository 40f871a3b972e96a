"""What the live feed says (GET /api/v1/stream), from three sources:

- the store: every committed change or delete of a record -> `resource` {kind, account, region, id,
  status} with the status the API shows (null once deleted). The store tells no write that
  changed nothing, so a resync of settled resources says nothing;
- the event log: every event -> `event` {account, region, source_type, source_id, message, date};
- the health monitor: a node's first answer, down, up again, a new role -> `node` {account, region,
  node, cache_cluster_id, node_id, replication_group_id, healthy, role}.

Each listener runs on the thread that made the change and only builds a small dict for the
broadcaster, which never blocks (broadcast.py)."""

from __future__ import annotations

from controlplane.admin.broadcast import Broadcaster
from controlplane.admin.nodes import ROLES
from controlplane.clock import Clock
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import node_name
from controlplane.state.events import EventLog
from controlplane.state.records import CacheCluster, Event, Record, ResourceKey
from controlplane.state.reserved import ReservedCacheNode
from controlplane.state.service_updates import ServiceUpdate
from controlplane.state.store import Store


class Feed:
    def __init__(self, broadcaster: Broadcaster, store: Store, clock: Clock) -> None:
        self._broadcaster = broadcaster
        self._store = store
        self._clock = clock

    def attach(self, events: EventLog, health: HealthMonitor) -> None:
        """Listen to the store, the event log and the health monitor."""
        self._store.listen(self.record_changed)
        events.listen(self.event_emitted)
        health.listen(self.health_changed)

    def record_changed(self, key: ResourceKey, record: Record | None) -> None:
        if not self._broadcaster.listening:
            return
        status: str | None = None
        if isinstance(record, (ServiceUpdate, ReservedCacheNode)):  # their status follows the clock
            status = record.api_status(self._clock.now())
        elif record is not None:
            status = record.api_status()  # type: ignore[attr-defined]  # every stored kind has one
        self._broadcaster.publish("resource", {"kind": key.kind, "account": key.account, "region": key.region,
                                               "id": key.id, "status": status}, key.account, key.region)

    def event_emitted(self, event: Event) -> None:
        self._broadcaster.publish("event", {
            "account": event.account, "region": event.region, "source_type": event.source_type,
            "source_id": event.source_id, "message": event.message,
            "date": event.date.isoformat().replace("+00:00", "Z")}, event.account, event.region)

    def health_changed(self, name: str, owner: ResourceKey, healthy: bool, role: str | None) -> None:
        if not self._broadcaster.listening:
            return
        cluster_id = node_id = group_id = None
        for cluster in self._store.records(CacheCluster, owner.account, owner.region):
            node = next((n for n in cluster.status.nodes
                         if node_name(owner.account, owner.region, cluster.id, n.node_id) == name), None)
            if node is not None:
                cluster_id, node_id, group_id = cluster.id, node.node_id, cluster.spec.replication_group_id
                break
        self._broadcaster.publish("node", {
            "account": owner.account, "region": owner.region, "node": name, "cache_cluster_id": cluster_id,
            "node_id": node_id, "replication_group_id": group_id, "healthy": healthy,
            "role": ROLES.get(role or "")}, owner.account, owner.region)
