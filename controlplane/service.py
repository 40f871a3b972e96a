"""The running service: everything it is made of, started and stopped together
(`app.state.service` in the web app). Built by controlplane.app.build_service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.admin.broadcast import Broadcaster
from controlplane.admin.faults import FaultInjector
from controlplane.admin.nodes import NodeStats
from controlplane.clock import Clock
from controlplane.handlers.context import Services
from controlplane.metrics import Metrics
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
from engine import NodeRuntime, NodeState

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
    metrics: Metrics
    l4_proxy: str = "builtin"  # what serves proxied endpoints: haproxy, builtin, or external (tests)
    closers: list[Callable[[], None]] = field(default_factory=list)  # processes of ours to stop (keyroute)
    started_at: float = field(default_factory=time.monotonic)
    nodes_left: int | None = None  # after stop(): the nodes still running (None: could not be told)

    def start(self) -> None:
        self.hub.start()
        self.runtime.set_exit_listener(self._node_exited)
        self.controller.start(before_workers=self.remove_orphans)
        self.health.start()
        self.metrics.start()

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
        self.metrics.stop()
        self.health.stop()
        self.controller.stop()
        for close in self.closers:
            close()
        self.node_stats.close()
        self.jobs.close()
        self.hub.close()
        self.nodes_left = self._running_nodes()
        self.runtime.close()
        self.store.close()

    def _running_nodes(self) -> int | None:
        try:
            return sum(1 for n in self.runtime.list_managed() if n.state != NodeState.EXITED)
        except Exception:  # e.g. the Docker engine went away first: the stop goes on regardless
            log.debug("cannot count the nodes left running", exc_info=True)
            return None

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

    def ca_pem(self) -> bytes | None:
        """The certificate of the CA that signs the nodes' TLS certificates (None: no CA)."""
        return None if self.infra.secrets is None else self.infra.secrets.ca.ca_pem()

    def reset(self, timeout: float = 30.0) -> int:
        """Delete every resource and stop every node (moto's /moto-api/reset)."""
        deleted: dict[str, type[CacheCluster] | type[ReplicationGroup] | type[Snapshot]] = {
            ReplicationGroup.KIND: ReplicationGroup, CacheCluster.KIND: CacheCluster, Snapshot.KIND: Snapshot}
        count = len(self.store.resource_keys())
        deadline = time.monotonic() + timeout
        while True:
            # Asked again on each round: a pass that read a cache before this reset may still have
            # created something (an automatic backup) that was not there the round before.
            keys = [k for k in self.store.resource_keys() if k.kind in deleted]
            if not keys or time.monotonic() >= deadline:
                break
            for key in keys:
                model = deleted[key.kind]
                current = self.store.get(key, model)
                if current is not None and not _reset_marked(current):
                    self.store.update(key, model, _request_delete)
                    self.controller.enqueue(key)
            time.sleep(0.01)
        if keys:
            raise TimeoutError(f"reset: {len(keys)} resource(s) still being deleted")
        for node in self.runtime.list_managed():
            self.runtime.remove(node.name)
        if self.infra.key_routes is not None:  # the serverless caches' endpoints
            self.infra.key_routes.close()
        self.infra.down_azs.clear()
        self.store.reset()  # what is left: records that go with the rest (service updates)
        return count


def _reset_marked(rec: object) -> bool:
    if isinstance(rec, Snapshot):
        return rec.spec.delete_requested
    assert isinstance(rec, CacheCluster | ReplicationGroup)
    return rec.spec.delete_requested and rec.spec.final_snapshot is None


def _request_delete(rec: CacheCluster | ReplicationGroup | Snapshot) -> None:
    rec.spec.delete_requested = True
    if not isinstance(rec, Snapshot):
        rec.spec.final_snapshot = None  # a reset takes no snapshots
    rec.generation += 1
