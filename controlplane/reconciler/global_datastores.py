"""The global datastore's own status machine (state/global_datastores.py): its first primary, which
secondaries replicate (`associated`), and FailoverGlobalReplicationGroup.

The member groups' reconcilers do the replicating (members.py reads `primary_upstream`: a
secondary's primary node replicates from the primary group's primary endpoint). A failover is a
planned switchover between the two groups' primary nodes, `FAILOVER TO` on the old one (engine
hand_over): writes pause there until the new primary has every acknowledged write, then the roles
swap. Meanwhile `role_held` keeps both groups' reconcilers off their primary nodes; afterwards
`status.primary` names the new primary group and each group's reconciler points its primary where
the new roles say (the old primary, now a secondary, at the new primary group's endpoint)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from controlplane.reconciler.errors import Requeue, TemporaryError
from controlplane.reconciler.infra import Infra, node_name
from controlplane.reconciler.nodes import PROBE_TIMEOUT
from controlplane.reconciler.replication_groups.context import NODE_ID
from controlplane.state.events import EventLog
from controlplane.state.global_datastores import GlobalMember, GlobalReplicationGroup, GlobalStatus
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.store import Store
from engine import RuntimeError_

log = logging.getLogger("elasticache_local.reconciler")

ASSOCIATE_POLL = 0.5  # seconds between looks at a secondary that does not replicate yet
HAND_OVER_TIMEOUT = 5.0  # seconds the old primary may pause writes for the new one to catch up


class GlobalDatastoreReconciler:
    kind = GlobalReplicationGroup.KIND

    def __init__(self, store: Store, infra: Infra, events: EventLog, enqueue: Callable[[ResourceKey], None]) -> None:
        self._store = store
        self._infra = infra
        self._events = events
        self._enqueue = enqueue

    def startup(self) -> None:
        return None

    def fail(self, key: ResourceKey, message: str) -> None:
        log.warning("global replication group %s: %s", key.id, message)

    def reconcile(self, key: ResourceKey) -> None:
        g = self._store.get(key, GlobalReplicationGroup)
        if g is None:
            return
        if g.status.primary is None:
            first = g.spec.primary
            g = self._write(g, lambda s: setattr(s, "primary", first))
        if g.failing_over():
            g = self._failover(g)
        waiting = self._associate(g)
        if waiting:
            raise Requeue(f"secondaries {', '.join(waiting)} do not replicate yet", delay=ASSOCIATE_POLL)

    # ---- steps --------------------------------------------------------------------------

    def _associate(self, g: GlobalReplicationGroup) -> list[str]:
        """Notes the secondaries whose primary node replicates from the primary region; returns
        those that do not yet."""
        waiting: list[str] = []
        seen: list[str] = []
        for member in g.members()[1:]:
            label = f"{member.region}/{member.replication_group_id}"
            rg = self._group(g, member)
            if rg is not None and rg.api_status() == "available" and self._replicating(rg):
                seen.append(label)
            else:
                waiting.append(label)
        if sorted(seen) != sorted(g.status.associated):
            def change(s: GlobalStatus) -> None:
                s.associated = sorted(seen)

            before = set(g.status.associated)
            g = self._write(g, change)
            for label in sorted(set(seen) - before):
                region, group_id = label.split("/", 1)
                self._emit(g.account, region, group_id, f"Replication group {group_id} joined global replication "
                                                        f"group {g.id} as a secondary")
        return waiting

    def _failover(self, g: GlobalReplicationGroup) -> GlobalReplicationGroup:
        assert g.spec.failover is not None
        seq, new = g.spec.failover.seq, g.spec.failover.to
        old = g.current_primary()
        old_rg, new_rg = self._group(g, old), self._group(g, new)
        old_node, new_node = self._primary_node(old_rg), self._primary_node(new_rg)
        if old_rg is None or new_rg is None or old_node is None or new_node is None:
            raise TemporaryError("a member group of the failover has no primary node yet", delay=ASSOCIATE_POLL)
        try:
            self._infra.runtime.hand_over(old_node[0], (new_node[1], new_node[2]), HAND_OVER_TIMEOUT)
        except RuntimeError_ as exc:
            raise TemporaryError(f"the switchover from {old_rg.id} to {new_rg.id}: {exc}",
                                 delay=ASSOCIATE_POLL) from exc

        def moved(s: GlobalStatus) -> None:
            s.primary, s.failover_done = new, seq
            label = f"{old.region}/{old.replication_group_id}"
            s.associated = sorted({*s.associated, label} - {f"{new.region}/{new.replication_group_id}"})

        g = self._write(g, moved)
        for who, role in ((new, "the primary"), (old, "a secondary")):
            self._emit(g.account, who.region, who.replication_group_id,
                       f"Replication group {who.replication_group_id} is now {role} of global replication group {g.id}")
        for member in g.members():
            self._enqueue(member.key(g.account))
        return g

    # ---- reads --------------------------------------------------------------------------

    def _group(self, g: GlobalReplicationGroup, member: GlobalMember) -> ReplicationGroup | None:
        return self._store.get(member.key(g.account), ReplicationGroup)

    def _primary_node(self, rg: ReplicationGroup | None) -> tuple[str, str, int] | None:
        """The group's primary node: its runtime name, address and port."""
        if rg is None or rg.status.primary is None:
            return None
        cluster = self._store.get(ResourceKey(CacheCluster.KIND, rg.account, rg.region, rg.status.primary),
                                  CacheCluster)
        if cluster is None or not cluster.status.nodes:
            return None
        node = cluster.status.nodes[0]
        return node_name(rg.account, rg.region, cluster.id, NODE_ID), node.host, node.port

    def _replicating(self, rg: ReplicationGroup) -> bool:
        node = self._primary_node(rg)
        if node is None:
            return False
        result = self._infra.runtime.probe(node[0], PROBE_TIMEOUT)
        return result.ok and result.role == "slave" and result.details.get("master_link_status") == "up"

    def _write(self, g: GlobalReplicationGroup, change: Callable[[GlobalStatus], object]) -> GlobalReplicationGroup:
        def apply(r: GlobalReplicationGroup) -> None:
            change(r.status)

        updated = self._store.update(g.key, GlobalReplicationGroup, apply)
        if updated is None:
            raise TemporaryError("global replication group vanished")
        return updated

    def _emit(self, account: str, region: str, group_id: str, message: str) -> None:
        self._events.emit(account, region, "replication-group", group_id, message)
