"""Fault injection, what AWS FIS does for real ElastiCache: kill, stop, freeze and resume a node,
interrupt an availability zone. Faults act on the nodes as an outside event would; the control
loop then notices and recovers like it does for a real failure. Every fault is an event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.clock import Clock
from controlplane.handlers import validate as v
from controlplane.model.errors import CacheClusterNotFoundFault, InvalidCacheClusterStateFault
from controlplane.reconciler.infra import Infra, node_name
from controlplane.state.events import EventLog
from controlplane.state.records import CacheCluster, ResourceKey
from controlplane.state.store import Store
from engine import RuntimeError_

NODE_ACTIONS = ("kill", "stop", "pause", "resume")


@dataclass
class AzOutage:
    az: str
    until: float  # clock.monotonic()


class FaultInjector:
    def __init__(self, store: Store, infra: Infra, events: EventLog, clock: Clock,
                 enqueue: Callable[[ResourceKey], None]) -> None:
        self._store = store
        self._infra = infra
        self._events = events
        self._clock = clock
        self._enqueue = enqueue
        self._lock = threading.Lock()

    def node(self, account: str, region: str, cluster_id: str, node_id: str, action: str) -> str:
        if action not in NODE_ACTIONS:
            raise v.invalid(f"Unknown fault action {action!r}: use one of {', '.join(NODE_ACTIONS)}.")
        cluster = self._store.get(ResourceKey(CacheCluster.KIND, account, region, cluster_id.lower()), CacheCluster)
        # Refusals are the errors AWS names for the same mistakes in RebootCacheCluster.
        if cluster is None:
            raise CacheClusterNotFoundFault(f"CacheCluster {cluster_id} not found.")
        if cluster.node(node_id) is None:
            raise v.invalid(f"Cache node {node_id} does not exist in cache cluster {cluster.id}.")
        name = node_name(account, region, cluster.id, node_id)
        runtime = self._infra.runtime
        try:
            {"kill": runtime.kill, "stop": runtime.stop, "pause": runtime.pause, "resume": runtime.resume}[action](name)
        except RuntimeError_ as exc:
            raise InvalidCacheClusterStateFault(f"Cannot {action} cache node {node_id} of {cluster.id}: {exc}") from exc
        verb = {"kill": "killed", "stop": "stopped", "pause": "frozen", "resume": "resumed"}[action]
        message = f"Fault injection: cache node {node_id} {verb}"
        self._events.emit(account, region, "cache-cluster", cluster.id, message)
        owner = self._infra.node_owner.get(name)
        if owner is not None:
            self._enqueue(owner)
        return message

    def interrupt_az(self, az: str, seconds: float) -> list[str]:
        """Power off every node placed in `az` (all accounts) for `seconds`: nothing is started
        there until it is over, so failovers must pick replicas elsewhere."""
        if seconds <= 0:
            raise v.invalid("The interruption's duration must be positive.")
        with self._lock:
            self._infra.down_azs[az] = self._clock.monotonic() + seconds
        hit: list[str] = []
        for cluster in self._store.records(CacheCluster):
            for node in cluster.status.nodes:
                if node.az != az:
                    continue
                name = node_name(cluster.account, cluster.region, cluster.id, node.node_id)
                self._infra.runtime.kill(name)
                hit.append(f"{cluster.id}/{node.node_id}")
                self._events.emit(cluster.account, cluster.region, "cache-cluster", cluster.id,
                                  f"Fault injection: availability zone {az} interrupted for {seconds:g} s; "
                                  f"cache node {node.node_id} is down")
                owner = self._infra.node_owner.get(name)
                if owner is not None:
                    self._enqueue(owner)
        return hit

    def restore_az(self, az: str) -> None:
        with self._lock:
            self._infra.down_azs.pop(az, None)
        for key in self._store.resource_keys():
            self._enqueue(key)
