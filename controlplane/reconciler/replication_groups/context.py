"""What every part of the replication-group reconciler works with: the store, the event log, the
clock, the runtime; and the few reads and writes they all make of a group and its members."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.catalog import resolve_version
from controlplane.clock import Clock
from controlplane.reconciler import texts
from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import Infra, node_name
from controlplane.reconciler.nodes import PROBE_TIMEOUT, Nodes
from controlplane.state.events import EventLog
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus
from controlplane.state.store import Store
from engine import ProbeResult

RG = "replication-group"
CC = "cache-cluster"
NODE_ID = "0001"  # every member cluster has one node


@dataclass
class GroupContext:
    store: Store
    infra: Infra
    events: EventLog
    clock: Clock
    health: HealthMonitor
    nodes: Nodes

    def name(self, rg: ReplicationGroup, member_id: str) -> str:
        """The runtime's name of a member's node."""
        return node_name(rg.account, rg.region, member_id, NODE_ID)

    def members(self, rg: ReplicationGroup) -> list[CacheCluster]:
        return members_of(self.store, rg)

    def probe(self, rg: ReplicationGroup, member_id: str) -> ProbeResult:
        return self.infra.runtime.probe(self.name(rg, member_id), PROBE_TIMEOUT)

    def write(self, rg: ReplicationGroup, change: Callable[[ReplicationGroupStatus], Any]) -> ReplicationGroup:
        """Change the group's status (the only part of it a reconciler writes)."""
        def apply(r: ReplicationGroup) -> None:
            change(r.status)

        updated = self.store.update(rg.key, ReplicationGroup, apply)
        if updated is None:
            raise TemporaryError("replication group vanished")
        return updated

    def update_member(self, member: CacheCluster, change: Callable[[CacheCluster], Any]) -> CacheCluster:
        updated = self.store.update(member.key, CacheCluster, change)
        if updated is None:
            raise TemporaryError(f"member {member.id} vanished")
        return updated

    def set_member_node(self, member: CacheCluster, status: str, version: str | None = None,
                        planned: str | None = None) -> CacheCluster:
        """The member node's status (`planned`: why it restarts on purpose; cleared otherwise)
        and the version it reports; a newly seen version is said in an event."""
        def change(c: CacheCluster) -> None:
            for n in c.status.nodes:
                n.status, n.planned = status, planned
                if version:
                    n.version = version
                    c.status.engine_version = version

        updated = self.update_member(member, change)
        if version and version != member.status.engine_version:
            wanted = updated.target().engine_version
            exact = resolve_version(updated.spec.engine, wanted, {updated.spec.engine: [version]}, True)[1]
            self.events.emit(updated.account, updated.region, CC, updated.id,
                             texts.runs_as(updated.spec.engine, wanted, version, exact))
        return updated

    def set_member_addresses(self, member: CacheCluster, addresses: list[str] | None) -> CacheCluster:
        """Record the floating addresses the member's node was told to hold (None: not known)."""
        def change(c: CacheCluster) -> None:
            for n in c.status.nodes:
                n.addresses = None if addresses is None else list(addresses)

        return self.update_member(member, change)

    def announce(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        """Every member and the group are available at the generation this pass acted on (the
        first time: with AWS's creation events)."""
        generation = rg.generation
        first = not rg.status.announced_available
        for m in members:
            if m.status.phase != "available" or not m.status.announced_available:
                created = not m.status.announced_available

                def ready(c: CacheCluster) -> None:
                    c.status.phase = "available"
                    c.status.announced_available = True
                    c.observed_generation = c.generation

                self.update_member(m, ready)
                if created:
                    self.emit(CC, m.id, rg, "Cache cluster created")

        def change(r: ReplicationGroup) -> None:
            r.status.phase = "available"
            r.status.af_applied = r.spec.automatic_failover if r.generation == generation else r.status.af_applied
            r.status.announced_available = True
            r.status.cluster_formed = r.cluster_enabled
            r.status.failure = None
            r.observed_generation = max(r.observed_generation, generation)

        self.store.update(rg.key, ReplicationGroup, change)
        if first:
            self.emit(RG, rg.id, rg, f"Replication group {rg.id} created")

    def emit(self, source_type: str, source_id: str, rg: ReplicationGroup, message: str) -> None:
        self.events.emit(rg.account, rg.region, source_type, source_id, message)


def member(members: list[CacheCluster], member_id: str | None) -> CacheCluster | None:
    return next((m for m in members if m.id == member_id), None)


def replaced(members: list[CacheCluster], updated: CacheCluster) -> list[CacheCluster]:
    """The list with `updated` in place of the record of the same member."""
    return [updated if m.id == updated.id else m for m in members]
