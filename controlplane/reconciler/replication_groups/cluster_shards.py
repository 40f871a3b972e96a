"""Per-shard changes of a cluster-mode group, done by the group's pass (cluster.py):

- replicas removed (DecreaseReplicaCount): every other node forgets the replica (CLUSTER FORGET;
  its 60 s ban keeps gossip from bringing it back), then its node is stopped and its record
  deleted. Replicas added need nothing here: cluster.py plans, starts, meets and makes them
  replicate their shard's primary like any member, and the group is available once they synced.
- the rolling restart to the group's node type and engine version (ModifyReplicationGroup), shard
  by shard as rollout.py does for one group: the shard's replicas first, one at a time, each back
  and synced (the pass's consistency check) before the next; then a coordinated CLUSTER FAILOVER
  to an updated replica (the old primary pauses its writers until the replica has every write:
  none acknowledged is lost), and the old primary, now a replica, restarts last. A restarted node
  keeps its data directory and nodes.conf: the same cluster identity, back in its shard. The
  other shards serve throughout, and the cluster stays cluster_state:ok.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from controlplane.reconciler import texts
from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.nodes import PROBE_TIMEOUT
from controlplane.reconciler.replication_groups.context import CC, NODE_ID, RG, GroupContext, member
from controlplane.reconciler.schedule import in_weekly_window
from controlplane.state import service_updates
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus
from engine import ClusterView, RuntimeError_

# Starts a member's node with the group's cluster settings (cluster.py's, which knows them).
StartNode = Callable[[ReplicationGroup, CacheCluster, str], CacheCluster]
ApplyPending = Callable[[ReplicationGroup, list[CacheCluster]], ReplicationGroup]


class ClusterShards:
    def __init__(self, ctx: GroupContext, start: StartNode, apply_pending: ApplyPending | None = None) -> None:
        self._ctx = ctx
        self._start = start
        self._apply_pending = apply_pending

    # ---- replicas removed -----------------------------------------------------------------

    def remove(self, rg: ReplicationGroup, members: list[CacheCluster]) -> tuple[ReplicationGroup, list[CacheCluster]]:
        """Members whose deletion was asked (never a shard's primary) leave the cluster and go."""
        ctx = self._ctx
        primaries = set(rg.status.shard_primaries.values())
        going = [m for m in members if m.spec.delete_requested and m.id not in primaries]
        if not going:
            return rg, members
        staying = [m for m in members if m not in going]
        runtime = ctx.infra.runtime
        for m in going:
            name = ctx.name(rg, m.id)
            try:
                node_id: str | None = runtime.cluster_view(name).me.node_id
            except RuntimeError_:
                node_id = None  # not running: cluster.py forgets the id nobody has any more
            for other in staying if node_id else []:
                # A node down now forgets it when cluster.py repairs the cluster (a stale id).
                with contextlib.suppress(RuntimeError_):
                    runtime.cluster_forget(ctx.name(rg, other.id), [node_id or ""])
            ctx.nodes.discard(name)
            if rg.status.config_on == m.id:
                rg = ctx.write(rg, _config_moves)
            ctx.store.delete(m.key)
            ctx.emit(CC, m.id, rg, "Cache cluster deleted")
        return rg, staying

    # ---- node type and engine version ---------------------------------------------------------

    def roll(self, rg: ReplicationGroup, members: list[CacheCluster], version: str, updating: bool = False) -> bool:
        """One step of the roll on a settled cluster; False when every node is as the group says
        (the group may be announced). Call with every member available and in sync."""
        if self._apply_pending is not None:
            rg = self._apply_pending(rg, members)
        node_type = rg.target().node_type
        window = in_weekly_window(rg.spec.maintenance_window, self._ctx.clock.now())

        def stale(m: CacheCluster) -> bool:
            node = m.status.nodes[0] if m.status.nodes else None
            return node is not None and node.status == "available" and (
                node.node_type not in (None, node_type)
                or (node.version is not None and service_updates.outdated(node.version, version, updating))
                or (node.parameter_status == "pending-reboot" and window))

        outdated = [m for m in members if stale(m)]
        if not outdated or rg.status.failover is not None:
            return False
        for group in rg.spec.node_groups:  # shard by shard, in the group's order
            primary = member(members, rg.status.shard_primaries.get(group.id))
            shard = [m for m in outdated if m.spec.node_group_id == group.id]
            if not shard or primary is None:
                continue
            replicas = [m for m in shard if m.id != primary.id]
            others = [m for m in members if m.spec.node_group_id == group.id and m.id != primary.id]
            if not replicas and others:  # the shard's primary is the last: its role goes to an updated replica
                self._switchover(rg, group.id, primary, others[0])
                return True
            chosen = replicas[0] if replicas else primary  # no replica: restarted in place, as AWS does
            if not self._config_elsewhere(rg, chosen, members):
                self._restart(rg, chosen, version)
            return True
        return False

    def adopt(self, rg: ReplicationGroup, views: dict[str, ClusterView]) -> ReplicationGroup:
        """A shard whose recorded primary follows another member of the shard, which serves the
        slots: that one is the primary (a switchover confirmed after its wait ran out)."""
        if rg.status.failover is not None:
            return rg
        ids = {v.me.node_id: i for i, v in views.items()}
        for shard, primary in sorted(rg.status.shard_primaries.items()):
            me = views[primary].me if primary in views else None
            leader = ids.get(me.master_id or "") if me is not None else None
            if leader is None or not views[leader].me.slots or views[leader].me.master_id is not None:
                continue

            def switch(s: ReplicationGroupStatus, shard: str = shard, leader: str = leader) -> None:
                s.shard_primaries[shard] = leader

            rg = self._ctx.write(rg, switch)
        return rg

    def _config_elsewhere(self, rg: ReplicationGroup, chosen: CacheCluster, members: list[CacheCluster]) -> bool:
        """Before the node holding the configuration endpoint restarts, the endpoint moves to
        another (cluster.py's next pass moves the address): new clients still find the cluster.
        Returns whether it moved."""
        if rg.status.config_on != chosen.id:
            return False
        other = next((m.id for m in members if m.id != chosen.id and m.status.nodes
                      and m.status.nodes[0].status == "available"), None)
        if other is None:
            return False
        self._ctx.write(rg, lambda s: setattr(s, "config_on", other))
        return True

    def _restart(self, rg: ReplicationGroup, m: CacheCluster, version: str) -> None:
        ctx = self._ctx
        node = m.status.nodes[0]
        ctx.emit(CC, m.id, rg, texts.shutdown(NODE_ID))  # AWS's texts for a planned restart
        m = ctx.set_member_node(m, "rebooting", planned=texts.reason(
            node.node_type not in (None, rg.target().node_type), node.version is not None and node.version != version))
        try:
            ctx.infra.runtime.stop(ctx.name(rg, m.id))
        except RuntimeError_ as exc:
            raise TemporaryError(f"restarting {m.id}: {exc}", delay=0.5) from exc
        self._start(rg, m, version)  # cluster.py's pass waits for it to answer, then for its sync

    def _switchover(self, rg: ReplicationGroup, shard: str, old: CacheCluster, new: CacheCluster) -> None:
        """A coordinated CLUSTER FAILOVER: the replica takes the slots once it has every write of
        the primary, which pauses its clients meanwhile (they are redirected after)."""
        ctx = self._ctx
        runtime = ctx.infra.runtime
        new_name = ctx.name(rg, new.id)
        try:
            runtime.cluster_failover(new_name, "")
        except RuntimeError_ as exc:
            raise TemporaryError(f"switchover of node group {shard} to {new.id}: {exc}", delay=0.5) from exc

        def promoted(name: str) -> bool:
            return runtime.probe(name, PROBE_TIMEOUT).role == "master"

        if ctx.nodes.await_ready([new_name], promoted):
            # Not promoted in time (the primary would have resumed its writers): the next pass
            # sees the same shard and asks again; the cluster's own view stays one.
            raise TemporaryError(f"switchover of node group {shard} to {new.id}: not promoted yet", delay=0.5)

        def switch(s: ReplicationGroupStatus) -> None:
            s.shard_primaries[shard] = new.id

        rg = ctx.write(rg, switch)
        ctx.emit(RG, rg.id, rg, f"Failover to replica node {new.id} completed")
        done = f"Failover from primary node {old.id} to replica node {new.id} completed"
        for source, source_id in ((CC, old.id), (RG, rg.id)):
            ctx.emit(source, source_id, rg, done)


def _config_moves(s: ReplicationGroupStatus) -> None:
    s.config_on = None  # cluster.py places the configuration endpoint on another node
