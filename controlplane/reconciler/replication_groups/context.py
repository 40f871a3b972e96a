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

    def emit(self, source_type: str, source_id: str, rg: ReplicationGroup, message: str) -> None:
        self.events.emit(rg.account, rg.region, source_type, source_id, message)


def member(members: list[CacheCluster], member_id: str | None) -> CacheCluster | None:
    return next((m for m in members if m.id == member_id), None)


def replaced(members: list[CacheCluster], updated: CacheCluster) -> list[CacheCluster]:
    """The list with `updated` in place of the record of the same member."""
    return [updated if m.id == updated.id else m for m in members]
