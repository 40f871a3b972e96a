"""Reconcile a replication group (cluster mode disabled): one primary and 0-5 replicas, each a
member cache cluster with one real node; floating primary and reader endpoint addresses; and the
failover state machine. The parts: members.py (nodes), endpoints.py (addresses and forwarders),
failover.py (the state machine), rollout.py (switchover, maintenance window, rolling restarts).

State: everything a restarted control plane needs is in the group's and its members' status (in
the store). What lives only in memory is rebuilt on the first pass: the hub's forwarders
(endpoints.py) and the replication marks of starting replicas (members.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from controlplane.catalog import resolve_version
from controlplane.clock import Clock
from controlplane.reconciler import parameters
from controlplane.reconciler.backups import Backups
from controlplane.reconciler.errors import PermanentError, Requeue, TemporaryError
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import Infra
from controlplane.reconciler.nodes import POLL, Nodes
from controlplane.reconciler.replication_groups.cluster import ClusterGroups
from controlplane.reconciler.replication_groups.cluster_failover import ClusterFailover
from controlplane.reconciler.replication_groups.cluster_restore import ClusterLoad
from controlplane.reconciler.replication_groups.context import CC, RG, GroupContext
from controlplane.reconciler.replication_groups.endpoints import Endpoints
from controlplane.reconciler.replication_groups.failover import Failover, Observer
from controlplane.reconciler.replication_groups.members import Members
from controlplane.reconciler.replication_groups.migration import GroupMigration
from controlplane.reconciler.replication_groups.restore import GroupRestore
from controlplane.reconciler.replication_groups.rollout import Rollout
from controlplane.reconciler.replication_groups.security import GroupSecurity
from controlplane.reconciler.restores import Restores, final_snapshot_failure
from controlplane.state.events import EventLog
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus, ResourceKey
from controlplane.state.service_updates import pin
from controlplane.state.store import Store
from engine import RuntimeError_

log = logging.getLogger("elasticache_local.reconciler")

FAILOVER_TIMEOUT = 30.0  # seconds a failover may take to move the endpoint before it is aborted
# Seconds after an automatic failover before the next one of the same group may start. Sentinel
# waits twice its failover-timeout (6 minutes by default); here failovers take milliseconds and
# users (and bench/) fail over again and again, so this only keeps a crash loop from chasing the
# primary role around the group.
FAILOVER_COOLDOWN = 0.5


class ReplicationGroupReconciler:
    kind = ReplicationGroup.KIND

    def __init__(self, store: Store, infra: Infra, events: EventLog, clock: Clock, health: HealthMonitor, *,
                 restores: Restores, backups: Backups, failover_timeout: float = FAILOVER_TIMEOUT,
                 failover_cooldown: float = FAILOVER_COOLDOWN, observer: Observer | None = None,
                 enqueue: Callable[[ResourceKey], None] | None = None) -> None:
        self._ctx = GroupContext(store, infra, events, clock, health, Nodes(infra, health))
        self._backups = backups
        self.endpoints = Endpoints(self._ctx)
        self._restore = GroupRestore(self._ctx, restores)
        self.members = Members(self._ctx, self.endpoints, self._restore)
        self.failover = Failover(self._ctx, self.endpoints, self.members, timeout=failover_timeout,
                                 cooldown=failover_cooldown, observer=observer)
        self.rollout = Rollout(self._ctx, self.endpoints, self.members)
        self.security = GroupSecurity(self._ctx, enqueue)  # enqueue: the users and groups it applied
        self.migration = GroupMigration(self._ctx)
        self.cluster = ClusterGroups(self._ctx, self.members, ClusterFailover(
            self._ctx, self.endpoints, self.members, timeout=failover_timeout, cooldown=failover_cooldown,
            observer=observer), ClusterLoad(self._ctx, self._restore, restores),
            apply_pending=self.rollout.apply_pending)

    # ---- entry points -----------------------------------------------------------------

    def startup(self) -> None:
        for rg in self._ctx.store.records(ReplicationGroup):
            for m in self._ctx.members(rg):
                self.members.own(rg, m.id)

    def reconcile(self, key: ResourceKey) -> None:
        ctx = self._ctx
        rg = ctx.store.get(key, ReplicationGroup)
        if rg is None:
            return
        members = ctx.members(rg)
        if rg.deleting():
            if self._final_snapshot_taken(rg):
                self._backups.forget(rg)
                self._delete(rg, members)
            return
        if rg.spec.restore is not None and not rg.status.restored and rg.status.phase == "create-failed":
            return  # the restore failed: nothing runs; only a delete helps
        version, updating = self._version(rg)
        if rg.cluster_enabled:
            self.cluster.reconcile(rg, members, version, updating)  # returns once the cluster is settled
            settled = ctx.store.get(key, ReplicationGroup)
            if settled is not None and settled.status.failover is None:  # tokens and users, live on every node
                self.security.converge(settled, ctx.members(settled))
                current = ctx.store.get(key, ReplicationGroup)  # automatic backups as for any group
                if current is not None and current.status.phase == "available":
                    self._backups.tick(current)
            return
        rg = self.endpoints.add_endpoints(rg, members, version)
        rg = self._first_primary(rg, members)
        rg, members = self.members.remove(rg, members)
        members = self.members.plan(rg, members)
        rg, held = self.failover.check(rg, members)
        if rg.status.failover is not None:
            rg = self.failover.advance(rg, version)
            members = ctx.members(rg)  # the failover changed them
            if rg.status.failover is None:
                # Over in this pass. An abort (the overall timeout) can leave the fenced primary
                # dead while a replica holds newer writes: decide afresh (a new failover, the
                # cooldown, or a restart in place only where no replica can take over) before
                # anything below restarts the old primary as a master.
                rg, held = self.failover.check(rg, members)
        members, waiting, blocked = self.members.run(rg, members, version, hold_primary=held is not None)
        if not waiting:
            rg, members, waiting = self._planned_changes(rg, members, version, updating)
        rg, members = self.endpoints.place(rg, members)  # endpoints move even while members wait
        if not waiting:
            members, waiting = self.members.reboot(rg, members, version)
        if not waiting and rg.status.failover is None:
            rg = self.security.converge(rg, members)
            members = [parameters.sync(ctx.store, ctx.infra, m) for m in members]
        migrating: float | None = None
        if not waiting:
            self._settle(rg, members)
            current = ctx.store.get(rg.key, ReplicationGroup)
            if current is not None and current.status.phase == "available" and current.status.failover is None:
                self._restore.settled(current)
                self._backups.tick(current)
                _, migrating = self.migration.converge(current)
        if waiting:
            raise Requeue(f"members {', '.join(waiting)} are not replicating yet", delay=POLL)
        if held is not None:
            raise Requeue("the failover waits for the cooldown", delay=held)
        if blocked:  # the rest of the group was converged first: endpoints still move
            raise TemporaryError(f"members {', '.join(blocked)} wait for their availability zone", delay=1.0)
        if migrating is not None:
            raise Requeue("an online migration is followed", delay=migrating)

    def fail(self, key: ResourceKey, message: str) -> None:
        rg = self._ctx.store.get(key, ReplicationGroup)
        if rg is None:
            return

        if rg.status.failure == message:
            return  # already reported; the resync retries quietly

        def change(s: ReplicationGroupStatus) -> None:
            s.phase = "create-failed" if not s.announced_available else s.phase
            s.failure = message

        self._ctx.write(rg, change)
        verb = "create" if not rg.status.announced_available else "repair"
        self._ctx.emit(RG, rg.id, rg, f"Failed to {verb} replication group: {message}")

    # ---- steps --------------------------------------------------------------------------

    def _version(self, rg: ReplicationGroup) -> tuple[str, bool]:
        """The version the nodes run (the primary's patch while nothing asks for another: a
        newly installed patch waits for its service update), and whether an update is applied."""
        available = self._ctx.infra.runtime.available_versions()
        wanted = rg.target().engine_version
        chosen, _ = resolve_version(rg.spec.engine, wanted, available, self._ctx.infra.strict_versions)
        if chosen is None:
            raise PermanentError(f"No {rg.spec.engine} {wanted} can run on this machine")
        return pin(self._ctx.store, rg, chosen, available.get(rg.spec.engine, ()))

    def _first_primary(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        if rg.status.primary is not None:
            return rg
        first = rg.spec.initial_primary or (members[0].id if members else None)
        return self._ctx.write(rg, lambda s: setattr(s, "primary", first))

    def _planned_changes(self, rg: ReplicationGroup, members: list[CacheCluster], version: str,
                         updating: bool = False) -> tuple[ReplicationGroup, list[CacheCluster], list[str]]:
        """With every member up: a switchover asked for, the window's pending changes, the
        rolling restart they call for. Returns the group, its members and those restarting."""
        members = self.security.align_links(rg, members)  # before a switchover or restart needs them
        switched = self.rollout.switchover(rg, members, version)
        if switched.status.primary != rg.status.primary:
            members = self._ctx.members(switched)  # the endpoint addresses moved
        rg = self.rollout.apply_pending(switched, members)
        return self.rollout.roll(rg, members, version, updating)

    def _settle(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        """Every member answers and no failover runs: the group is available at the generation
        this pass acted on."""
        ctx = self._ctx
        if rg.status.failover is not None:
            return
        if any(not m.status.nodes or m.status.nodes[0].status != "available" for m in members):
            return
        ctx.announce(rg, members)

    def _final_snapshot_taken(self, rg: ReplicationGroup) -> bool:
        """As for cache clusters: the delete waits for its final snapshot, and does not happen
        if that failed."""
        failure = final_snapshot_failure(self._ctx.store, rg)
        if failure is None:
            return True
        self._ctx.write(rg, lambda s: setattr(s, "final_snapshot_failed", rg.spec.final_snapshot))
        self._ctx.emit(RG, rg.id, rg, f"Final snapshot {rg.spec.final_snapshot} failed ({failure}): replication "
                                      f"group {rg.id} was not deleted")
        return False

    def _delete(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        ctx = self._ctx
        for m in members:
            name = ctx.name(rg, m.id)
            if rg.spec.retain_primary_cluster and m.id == rg.status.primary:
                # Kept as a standalone cluster: it stops holding the group's addresses.
                with contextlib.suppress(RuntimeError_):
                    ctx.infra.runtime.set_addresses(name, [])
                ctx.nodes.own(name, m.key, slow=True)  # as the standalone cluster it becomes

                # The one spec write of a reconciler: the group that named this cluster is gone
                # with this pass, and which member stays (the primary now) is only known here.
                def standalone(c: CacheCluster) -> None:
                    c.spec.replication_group_id = None
                    for n in c.status.nodes:
                        n.addresses = None

                ctx.update_member(m, standalone)
                continue
            ctx.nodes.discard(name)
            ctx.store.delete(m.key)
            ctx.emit(CC, m.id, rg, "Cache cluster deleted")
        self.endpoints.remove_endpoints(rg)
        self.cluster.remove(rg)
        ctx.store.delete(rg.key)
        ctx.emit(RG, rg.id, rg, f"Replication group {rg.id} deleted")
