"""The running service: everything it is made of, started and stopped together
(`app.state.service` in the web app). Built by controlplane.app.build_service."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.admin.broadcast import Broadcaster
from controlplane.admin.faults import FaultInjector
from controlplane.admin.nodes import NodeStats
from controlplane.clock import Clock
from controlplane.handlers.context import Services
from controlplane.protocol.model import ApiModel
from controlplane.query import QueryApi
from controlplane.reconciler.cache_clusters import CacheClusterReconciler
from controlplane.reconciler.controller import Controller
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import EndpointHub, Infra
from controlplane.reconciler.jobs import Jobs
from controlplane.reconciler.replication_groups import ReplicationGroupReconciler
from controlplane.reconciler.timewarp import Advanced, TimeWarp
from controlplane.settings import Settings
from controlplane.state.events import EventLog
from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.snapshots import Snapshot
from controlplane.state.store import Store
from engine import NodeRuntime

log = logging.getLogger("elasticache_local")


@dataclass
class Service:
    """Everything the running service is made of; `app.state.service` in the web app."""

    settings: Settings
    api: ApiModel
    store: Store
    events: EventLog
    clock: Clock
    runtime: NodeRuntime
    hub: EndpointHub
    controller: Controller
    clusters: CacheClusterReconciler
    groups: ReplicationGroupReconciler
    infra: Infra
    health: HealthMonitor
    faults: FaultInjector
    services: Services  # what handlers get: the service layer's dependencies
    query: QueryApi
    jobs: Jobs
    timewarp: TimeWarp
    feed: Broadcaster  # the live feed (GET /api/v1/stream)
    node_stats: NodeStats  # the engines' own counters, read briefly cached (GET /api/v1/nodes)
    addressing: str
    l4_proxy: str = "builtin"  # what serves proxied endpoints: haproxy, builtin, or external (tests)
    started_at: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.hub.start()
        self.runtime.set_exit_listener(self._node_exited)
        self.controller.start(before_workers=self.remove_orphans)
        self.health.start()

    def remove_orphans(self) -> list[str]:
        """Nodes this runtime manages that no resource owns any more (deleted while the service
        was down, or left by a crash mid-delete): removed, data and all."""
        orphans = [n.name for n in self.runtime.list_managed() if n.name not in self.infra.node_owner]
        for name in orphans:
            log.warning("removing orphan node %s: no resource owns it", name)
            self.runtime.kill(name)
            self.runtime.remove(name)
        return orphans

    def stop(self) -> None:
        """Stop the API's machinery. Nodes keep running; the next start re-adopts them."""
        self.feed.close()  # open streams end
        self.health.stop()
        self.controller.stop()
        self.node_stats.close()
        self.jobs.close()
        self.hub.close()
        self.runtime.close()
        self.store.close()

    def _node_exited(self, name: str) -> None:
        """The runtime saw a node exit: its owner reconciles now (no probe timeout to wait)."""
        if self.health.exited(name):
            return  # watched: the health monitor told the owner
        key = self.infra.node_owner.get(name)
        if key is not None:
            self.controller.enqueue(key)

    def advance_clock(self, seconds: float) -> Advanced:
        """Move the service clock forward, letting every window on the way fire (TimeWarp)."""
        return self.timewarp.advance(seconds)

    def available_versions(self) -> Mapping[str, Sequence[str]]:
        return self.runtime.available_versions()

    def reset(self, timeout: float = 30.0) -> int:
        """Delete every resource and stop every node (moto's /moto-api/reset)."""
        keys = self.store.resource_keys()
        for key in keys:
            if key.kind == ReplicationGroup.KIND:
                self.store.update(key, ReplicationGroup, _request_delete)
            elif key.kind == CacheCluster.KIND:
                self.store.update(key, CacheCluster, _request_delete)
            elif key.kind == Snapshot.KIND:
                self.store.update(key, Snapshot, _request_delete)  # its file goes with it
            self.controller.enqueue(key)
        deadline = time.monotonic() + timeout
        while self.store.resource_keys() and time.monotonic() < deadline:
            time.sleep(0.01)
        leftover = self.store.resource_keys()
        if leftover:
            raise TimeoutError(f"reset: {len(leftover)} resource(s) still being deleted")
        for node in self.runtime.list_managed():
            self.runtime.remove(node.name)
        self.infra.down_azs.clear()
        self.store.reset()
        return len(keys)


def _request_delete(rec: CacheCluster | ReplicationGroup | Snapshot) -> None:
    rec.spec.delete_requested = True
    if not isinstance(rec, Snapshot):
        rec.spec.final_snapshot = None  # a reset takes no snapshots
    rec.generation += 1
