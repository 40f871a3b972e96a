"""Planned changes to a running group: a switchover of its primary (ModifyReplicationGroup
PrimaryClusterId, or before restarting the primary), pending modifications applied in the
maintenance window, and the rolling restart that brings every node to the group's node type and
engine version."""

from __future__ import annotations

import contextlib

from controlplane.catalog import version_key
from controlplane.reconciler import texts
from controlplane.reconciler.errors import Requeue, TemporaryError
from controlplane.reconciler.replication_groups.context import CC, NODE_ID, RG, GroupContext, member, replaced
from controlplane.reconciler.replication_groups.endpoints import Endpoints
from controlplane.reconciler.replication_groups.members import Members
from controlplane.reconciler.schedule import in_weekly_window
from controlplane.reconciler.security import tls_of
from controlplane.state import service_updates
from controlplane.state.acl import node_acl
from controlplane.state.global_datastores import primary_upstream, upgrade_held
from controlplane.state.records import CacheCluster, PrimaryChange, ReplicationGroup, ReplicationGroupStatus
from engine import RuntimeError_


class Rollout:
    def __init__(self, ctx: GroupContext, endpoints: Endpoints, members: Members) -> None:
        self._ctx = ctx
        self._endpoints = endpoints
        self._members = members

    def switchover(self, rg: ReplicationGroup, members: list[CacheCluster], version: str,
                   change: PrimaryChange | None = None) -> ReplicationGroup:
        """A planned switchover: no acknowledged write is lost and nobody is killed. `FAILOVER
        TO` pauses writes on the old primary until the replica has them all; then the endpoint
        moves and the old primary's clients are disconnected, so they reconnect through it."""
        ctx = self._ctx
        change = change or rg.spec.primary_change
        if change is None or change.seq <= rg.status.primary_change_done:
            return rg
        old, new = member(members, rg.status.primary), member(members, change.member)
        if new is None or old is None or new.id == old.id:
            return ctx.write(rg, lambda s: setattr(s, "primary_change_done", change.seq))
        runtime = ctx.infra.runtime
        old_name, new_name = ctx.name(rg, old.id), ctx.name(rg, new.id)
        target = (new.status.nodes[0].host, new.status.nodes[0].port)
        upstream = primary_upstream(ctx.store, rg)
        try:
            if upstream is not None:
                # Both are read-only replicas (of a migration's source or of the global datastore's
                # primary group): nothing to pause; the new one follows the upstream, the old one it.
                runtime.replicate(new_name, upstream)
                runtime.replicate(old_name, target)
            elif version_key(version) >= (6, 2):
                runtime.hand_over(old_name, target)
            else:  # no FAILOVER command before 6.2: promote, then demote
                runtime.replicate(new_name, None)
                # REPLICAOF NO ONE switches the role before it answers: one probe confirms it.
                if ctx.probe(rg, new.id).role != "master":
                    raise RuntimeError_(f"{new.id} was not promoted")
                runtime.replicate(old_name, target)
        except RuntimeError_ as exc:
            raise TemporaryError(f"switchover to {new.id}: {exc}", delay=0.5) from exc

        def switch(s: ReplicationGroupStatus) -> None:
            s.primary = new.id
            s.primary_change_done = change.seq
            s.reader_on = None

        rg = ctx.write(rg, switch)
        self._endpoints.release(rg, old)
        self._endpoints.claim_primary(rg, new)
        with contextlib.suppress(RuntimeError_):
            runtime.disconnect_clients(old_name)
        for m in members:
            if m.id not in (new.id, old.id):
                with contextlib.suppress(RuntimeError_):  # converged later if it fails now
                    runtime.replicate(ctx.name(rg, m.id), target)
        if change is rg.spec.primary_change:  # ModifyReplicationGroup PrimaryClusterId
            ctx.emit(RG, rg.id, rg, f"Primary cluster changed from {old.id} to {new.id}")
        else:  # before restarting the primary in a roll: AWS writes a failover, as in an engine upgrade
            ctx.emit(RG, rg.id, rg, f"Failover to replica node {new.id} completed")
            done = f"Failover from primary node {old.id} to replica node {new.id} completed"
            for source, source_id in ((CC, old.id), (RG, rg.id)):
                ctx.emit(source, source_id, rg, done)
        return rg

    def apply_pending(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        """Node type and engine version asked without ApplyImmediately: in the maintenance window.
        They stay in spec (the handlers'); the group's status and its members' record that they
        were applied, and rg.target() is the spec with them applied."""
        if rg.unapplied().empty() or rg.api_status() != "available":
            return rg
        if not in_weekly_window(rg.spec.maintenance_window, self._ctx.clock.now()):
            return rg
        pending = rg.spec.pending.model_copy(deep=True)
        for m in members:
            self._ctx.update_member(m, lambda c: setattr(c.status, "pending_applied", pending.model_copy()))

        def apply(s: ReplicationGroupStatus) -> None:
            s.pending_applied = pending
            s.phase = "modifying"  # until the roll is done and _settle sees every member available

        rg = self._ctx.write(rg, apply)
        self._ctx.emit(RG, rg.id, rg, "Applying pending modifications in the maintenance window")
        return rg

    def roll(self, rg: ReplicationGroup, members: list[CacheCluster], version: str,
             updating: bool = False) -> tuple[ReplicationGroup, list[CacheCluster], list[str]]:
        """Restart, one at a time, the nodes not running the group's node type and version
        (an older patch only while a service update is `updating`): replicas first; then the
        primary, after a switchover to a replica when there is one. Call with every member
        available. Returns the group, its members, and the one still restarting."""
        ctx = self._ctx
        node_type = rg.target().node_type
        tls = tls_of(node_acl(ctx.store, rg))  # a TLS mode change restarts each node too

        def stale(m: CacheCluster) -> bool:
            node = m.status.nodes[0] if m.status.nodes else None
            return node is not None and node.status == "available" and (
                node.node_type not in (None, node_type) or node.tls != tls
                or (node.version is not None and service_updates.outdated(node.version, version, updating))
                or (node.parameter_status == "pending-reboot" and window))  # parameters wait for a restart

        window = in_weekly_window(rg.spec.maintenance_window, ctx.clock.now())

        outdated = [m for m in members if stale(m)]
        if not outdated or rg.status.failover is not None:
            return rg, members, []
        if upgrade_held(ctx.store, rg, version):  # not settled meanwhile: the group is still modifying
            raise Requeue("the engine upgrade waits for the global datastore's secondaries", delay=0.5)
        primary = member(members, rg.status.primary)
        assert primary is not None
        replicas = [m for m in outdated if m.id != primary.id]
        if replicas:
            chosen = replicas[0]
        else:
            others = [m for m in members if m.id != primary.id]
            if others:  # the primary is the last: hand its role to an updated replica first
                change = PrimaryChange(seq=rg.status.primary_change_done + 1, member=others[0].id)
                rg = self.switchover(rg, members, version, change)
                return self.roll(rg, ctx.members(rg), version, updating)
            chosen = primary
        node = chosen.status.nodes[0]
        ctx.emit(CC, chosen.id, rg, texts.shutdown(NODE_ID))  # AWS's texts for a planned restart
        chosen = ctx.set_member_node(chosen, "rebooting", planned=texts.reason(
            node.node_type not in (None, node_type), node.version is not None and node.version != version))
        ctx.infra.runtime.stop(ctx.name(rg, chosen.id))
        current = member(members, rg.status.primary)
        assert current is not None
        members = replaced(members, self._members.start(rg, chosen, current, version))
        members, waiting = self._members.await_ready(rg, members, [chosen.id])
        if waiting:
            return rg, members, waiting
        if len(outdated) > 1:
            raise TemporaryError("rolling the next node", delay=0.0)
        return rg, members, []
