"""Cluster mode enabled: a replication group whose shards form one Redis Cluster.

Level-triggered like the rest of the loop. Each pass: the configuration endpoint has an address;
every member has a node (planned as for any group) started with `cluster-enabled yes` and its own
client address announced; a shard whose primary died fails over first (cluster_failover.py);
dead nodes start again on their own data directory (their nodes.conf keeps their cluster identity,
so a former primary rejoins as a replica of the node that took its slots); then the cluster is
formed or repaired from what the nodes themselves report: every node meets every other, each
shard's primary serves its slots, each replica follows its shard's primary. The group is
`available` only when every node says cluster_state:ok and they all agree on the slot map.

Persisted: each shard's primary, the configuration endpoint and its holder (status).
"""

from __future__ import annotations

from controlplane.catalog import version_key
from controlplane.reconciler.errors import Requeue, TemporaryError
from controlplane.reconciler.infra import build_node_config, endpoint_name
from controlplane.reconciler.nodes import POLL, PROBE_TIMEOUT
from controlplane.reconciler.replication_groups.cluster_failover import ClusterFailover
from controlplane.reconciler.replication_groups.cluster_restore import ClusterLoad
from controlplane.reconciler.replication_groups.cluster_shards import ApplyPending, ClusterShards
from controlplane.reconciler.replication_groups.context import CC, NODE_ID, GroupContext, member, replaced
from controlplane.reconciler.replication_groups.members import Members, offset
from controlplane.reconciler.security import tls_of
from controlplane.state.acl import node_acl
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus
from engine import ClusterView, ProxyError, RuntimeError_, merge_ranges

# Cluster settings of every node: the control plane alone decides failovers (as for groups without
# cluster mode: no election races its own); a shard down leaves the others serving; replicas stay
# in the shard they were put in (no migration to orphaned masters).
NODE_SETTINGS = {
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",
    "cluster-node-timeout": "5000",
    "cluster-replica-no-failover": "yes",
    "cluster-require-full-coverage": "no",
    "cluster-migration-barrier": "999",
}


class ClusterGroups:
    def __init__(self, ctx: GroupContext, members: Members, failover: ClusterFailover, load: ClusterLoad,
                 apply_pending: ApplyPending | None = None) -> None:
        self._ctx = ctx
        self._members = members
        self._failover = failover
        self._load = load  # a group created from a snapshot: its keys, once the cluster is formed
        self._shards = ClusterShards(ctx, self._start, apply_pending)  # replicas removed, rolling restarts
        self._forwarders: dict[str, tuple[str, int] | None] = {}  # as in endpoints.py: rebuilt per process

    def reconcile(self, rg: ReplicationGroup, members: list[CacheCluster], version: str,
                  updating: bool = False) -> None:
        rg = self._config_endpoint(rg, version)
        rg = self._first_primaries(rg, members)
        rg, members = self._shards.remove(rg, members)
        members = self._members.plan(rg, members)
        rg = self._failover.run(rg, members)
        members = self._ctx.members(rg)
        members, starting = self._run(rg, members, version)
        if starting:
            raise Requeue(f"members {', '.join(starting)} are starting", delay=POLL)
        views = self._views(rg, members)
        rg = self._shards.adopt(rg, views)
        if self._form(rg, members, views):
            views = self._views(rg, members)
        rg = self._place_config(rg, members)
        problem = consistency(rg, members, views) or self._unsynced(rg, members)
        if problem is not None:
            raise Requeue(f"cluster not settled: {problem}", delay=POLL)
        if self._shards.roll(rg, members, version, updating):
            raise Requeue("rolling the nodes to the group's node type and engine version", delay=0.0)
        rg = self._load.run(rg, members, version)
        self._settle(rg, members)

    def remove(self, rg: ReplicationGroup) -> None:
        name = endpoint_name(rg.account, rg.region, rg.id, "config")
        self._forwarders.pop(name, None)
        if rg.status.proxied:
            self._ctx.infra.hub.remove(name)

    # ---- the configuration endpoint ---------------------------------------------------------

    def _config_endpoint(self, rg: ReplicationGroup, version: str) -> ReplicationGroup:
        infra = self._ctx.infra
        if rg.status.config_host is None:
            proxied = infra.endpoint_addresses.mode != "loopback" or version_key(version) < (7,)
            with infra.alloc_lock:
                host, port = infra.allocate(infra.endpoint_addresses, rg.spec.port, self._ctx.store)

                def set_endpoint(s: ReplicationGroupStatus) -> None:
                    s.config_host, s.config_port, s.proxied = host, port, proxied

                rg = self._ctx.write(rg, set_endpoint)
        return rg

    def _place_config(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        """The configuration endpoint on one healthy node (kept where it is while that one is)."""
        ctx = self._ctx
        healthy = [m.id for m in members if m.status.nodes and m.status.nodes[0].status == "available"
                   and not ctx.health.is_down(ctx.name(rg, m.id))]
        holder = rg.status.config_on if rg.status.config_on in healthy else (healthy[0] if healthy else None)
        if holder != rg.status.config_on:
            rg = ctx.write(rg, lambda s: setattr(s, "config_on", holder))
        assert rg.status.config_host is not None and rg.status.config_port is not None
        if rg.status.proxied:
            name = endpoint_name(rg.account, rg.region, rg.id, "config")
            target = _address(member(members, holder))
            try:
                if name not in self._forwarders:
                    ctx.infra.hub.add_tcp_forwarder(name, rg.status.config_host, rg.status.config_port, target)
                elif self._forwarders[name] != target:
                    ctx.infra.hub.set_target(name, target)
            except (OSError, ProxyError) as exc:
                self._forwarders.pop(name, None)
                raise TemporaryError(f"configuration endpoint: {exc}", delay=0.2) from exc
            self._forwarders[name] = target
            return rg
        for phase in ("release", "claim"):  # one address, one listener: drop before taking
            for m in members:
                wanted = [rg.status.config_host] if m.id == holder else []
                current = m.status.nodes[0].addresses if m.status.nodes else None
                if current == wanted or (phase == "release") != (not wanted):
                    continue
                try:
                    ctx.infra.runtime.set_addresses(ctx.name(rg, m.id), wanted)
                except RuntimeError_ as exc:
                    if ctx.health.is_down(ctx.name(rg, m.id)):
                        continue
                    raise TemporaryError(str(exc), delay=0.1) from exc
                members = replaced(members, ctx.set_member_addresses(m, wanted))
        return rg

    # ---- nodes ------------------------------------------------------------------------------

    def _first_primaries(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        missing = {g.id: min((m.id for m in members if m.spec.node_group_id == g.id), default=None)
                   for g in rg.spec.node_groups if g.id not in rg.status.shard_primaries}
        if not any(missing.values()):
            return rg

        def first(s: ReplicationGroupStatus) -> None:
            s.shard_primaries.update({k: v for k, v in missing.items() if v})

        return self._ctx.write(rg, first)

    def _run(self, rg: ReplicationGroup, members: list[CacheCluster],
             version: str) -> tuple[list[CacheCluster], list[str]]:
        """Start every node that does not run (a dead shard primary only once its shard has
        failed over, or when none of its replicas can take over); returns those starting."""
        ctx = self._ctx
        alive = {m.id: ctx.nodes.running(ctx.name(rg, m.id), m.status.nodes[0].status == "available")
                 for m in members}
        starting = [m.id for m in members if alive[m.id] and m.status.nodes[0].status != "available"]
        for m in members:
            if alive[m.id] or self._failover.holds(rg, m.id):
                continue
            if m.status.nodes[0].status == "available":
                ctx.emit(CC, m.id, rg, f"Recovering cache nodes {NODE_ID}")
                m = ctx.set_member_node(m, "rebooting")
            # A replacement node, as AWS's: empty, with a new cluster identity. Restarted on its
            # old nodes.conf, a former primary would serve its old slots, empty, to any client
            # that asks it before the cluster tells it it lost them. Its old id is forgotten.
            ctx.infra.runtime.remove(ctx.name(rg, m.id))
            members = replaced(members, self._start(rg, m, version))
            starting.append(m.id)
        if not starting:
            return members, []
        current = [members]

        def ready(name: str) -> bool:
            m = next(x for x in current[0] if ctx.name(rg, x.id) == name)
            result = ctx.infra.runtime.probe(name, PROBE_TIMEOUT)
            if not result.ok:
                return False
            was, planned = m.status.nodes[0].status, m.status.nodes[0].planned
            current[0] = replaced(current[0], ctx.set_member_node(m, "available", version=result.version))
            if planned is not None:
                self._members.restarted(rg, current[0], m.id, planned)
            elif was == "rebooting":
                ctx.emit(CC, m.id, rg, f"Finished recovery for cache nodes {NODE_ID}")
            return True

        waiting = ctx.nodes.await_ready([ctx.name(rg, i) for i in starting], ready)
        return current[0], [i for i in starting if ctx.name(rg, i) in waiting]

    def _start(self, rg: ReplicationGroup, m: CacheCluster, version: str) -> CacheCluster:
        ctx = self._ctx
        node = m.status.nodes[0]
        # The nodes announce their own client address: CLUSTER SLOTS / SHARDS and MOVED / ASK
        # send clients straight to them, wherever they first connected (the configuration endpoint).
        settings = {**NODE_SETTINGS, "cluster-announce-ip": node.host, "cluster-announce-port": str(node.port)}
        extra = [rg.status.config_host] if m.id == rg.status.config_on and rg.status.config_host and \
            not rg.status.proxied else []
        if extra:
            settings["bind"] = " ".join(extra)
        node_type = rg.target().node_type
        acl = node_acl(ctx.store, rg)
        # Its certificate names the configuration endpoint too: that address moves between nodes.
        names = [node.host, *([rg.status.config_host] if rg.status.config_host else [])]
        config = build_node_config(name=ctx.name(rg, m.id), engine=rg.spec.engine, version=version, host=node.host,
                                   port=node.port, node_type=node_type,
                                   labels={"account": rg.account, "region": rg.region, "cluster": m.id,
                                           "node": NODE_ID, "group": rg.id,
                                           "node-group": m.spec.node_group_id or ""},
                                   settings=settings, security=ctx.infra.node_security(acl, names))
        ctx.nodes.start(config, m.id, temporary_delay=0.3)

        def started(c: CacheCluster) -> None:
            c.status.nodes[0].node_type = node_type
            c.status.nodes[0].addresses = list(extra)
            c.status.nodes[0].tls = tls_of(acl)  # what GroupSecurity.converge compares with the group's

        return ctx.update_member(m, started)

    def _unsynced(self, rg: ReplicationGroup, members: list[CacheCluster]) -> str | None:
        """A replica whose link to its primary is not up yet (its first sync still runs), or that
        has received nothing over it: the cluster lists a replica in CLUSTER SLOTS / SHARDS only
        once it reports a replication offset above 0, which an idle primary sends only with its
        next replica ping (10 s), so the primary is given a mark to stream (no key is touched)."""
        primaries = rg.status.shard_primaries
        for m in members:
            if m.id in primaries.values():
                continue
            result = self._ctx.probe(rg, m.id)
            if not result.ok or result.role != "slave" or result.details.get("master_link_status") != "up":
                return f"member {m.id} is not replicating yet"
            primary = primaries.get(m.spec.node_group_id or "")
            if offset(result) == 0 and primary is not None:
                try:
                    self._ctx.infra.runtime.replication_mark(self._ctx.name(rg, primary))
                except RuntimeError_ as exc:
                    return f"member {m.id}: {exc}"
                return f"member {m.id} has received nothing from its primary yet"
        return None

    def _views(self, rg: ReplicationGroup, members: list[CacheCluster]) -> dict[str, ClusterView]:
        ctx, out = self._ctx, {}
        for m in members:
            try:
                out[m.id] = ctx.infra.runtime.cluster_view(ctx.name(rg, m.id))
            except RuntimeError_ as exc:
                raise TemporaryError(f"member {m.id}: {exc}", delay=POLL) from exc
        return out

    # ---- forming and repairing the cluster ----------------------------------------------------

    def _form(self, rg: ReplicationGroup, members: list[CacheCluster], views: dict[str, ClusterView]) -> bool:
        """One round of what the cluster lacks: meetings, slots, replicas. Returns whether it acted."""
        runtime, ctx = self._ctx.infra.runtime, self._ctx
        acted = False
        addresses = {m.id: (m.status.nodes[0].host, m.status.nodes[0].port) for m in members}
        ids = {i: v.me.node_id for i, v in views.items()}
        try:
            for m in members:
                known = {n.node_id for n in views[m.id].nodes if not n.handshake}
                stale = sorted(known - set(ids.values()))  # nodes replaced since: forgotten everywhere
                unknown = [addresses[i] for i, node_id in ids.items() if node_id not in known]
                if stale:
                    runtime.cluster_forget(ctx.name(rg, m.id), stale)
                if unknown:
                    runtime.cluster_meet(ctx.name(rg, m.id), unknown)
                acted = acted or bool(stale or unknown)
        except RuntimeError_ as exc:
            raise TemporaryError(f"forming the cluster: {exc}", delay=POLL) from exc
        for group in rg.spec.node_groups:
            primary = rg.status.shard_primaries.get(group.id)
            if primary not in views:
                continue
            view = views[primary]
            owned = merge_ranges(r for n in view.nodes if n.role == "master" for r in n.slots)
            free = _minus(group.slots, owned)
            if free:
                try:
                    runtime.cluster_add_slots(ctx.name(rg, primary), free)
                except RuntimeError_ as exc:
                    raise TemporaryError(f"slots of node group {group.id}: {exc}", delay=POLL) from exc
                acted = True
            primary_id = view.me.node_id
            for m in members:
                if m.spec.node_group_id != group.id or m.id == primary:
                    continue
                me = views[m.id].me
                if me.master_id == primary_id or me.slots:
                    continue  # following already, or a former primary that has not heard yet
                if views[m.id].node(primary_id) is None:
                    continue  # it has not met the primary yet: the next round
                try:
                    runtime.cluster_replicate(ctx.name(rg, m.id), primary_id)
                except RuntimeError_ as exc:
                    raise TemporaryError(f"member {m.id}: {exc}", delay=POLL) from exc
                acted = True
        return acted

    def _settle(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        if rg.status.failover is None:
            self._ctx.announce(rg, members)


def consistency(rg: ReplicationGroup, members: list[CacheCluster], views: dict[str, ClusterView]) -> str | None:
    """What keeps the cluster from being as the group says (None: nothing): every node answers
    cluster_state:ok, knows every other, agrees on one slot map, which is the shards' own with
    each shard's primary serving its slots, and each replica follows its shard's primary."""
    ids = {i: v.me.node_id for i, v in views.items()}
    expected: dict[tuple[int, int], str] = {}
    for group in rg.spec.node_groups:
        primary = rg.status.shard_primaries.get(group.id)
        if primary not in ids:
            return f"node group {group.id} has no primary"
        for r in group.slots:
            expected[(r[0], r[1])] = ids[primary]
    want = _ranges_by_owner(expected)
    for m in members:
        view = views.get(m.id)
        if view is None or not m.status.nodes or m.status.nodes[0].status != "available":
            return f"member {m.id} is not up"
        if not view.state_ok:
            return f"member {m.id} says cluster_state is not ok"
        if len([n for n in view.nodes if not n.handshake]) != len(members):
            return f"member {m.id} knows {len(view.nodes)} of {len(members)} nodes"
        if any(n.failing for n in view.nodes):
            return f"member {m.id} sees a failing node"
        if _ranges_by_owner(view.slot_map()) != want:
            return f"member {m.id} has another slot map"
        primary = rg.status.shard_primaries.get(m.spec.node_group_id or "")
        if m.id != primary and view.me.master_id != ids.get(primary or ""):
            return f"member {m.id} does not follow its shard's primary"
    return None


def _ranges_by_owner(slot_map: dict[tuple[int, int], str]) -> dict[str, tuple[tuple[int, int], ...]]:
    owners: dict[str, list[tuple[int, int]]] = {}
    for r, owner in slot_map.items():
        owners.setdefault(owner, []).append(r)
    return {o: merge_ranges(rs) for o, rs in owners.items()}


def _minus(wanted: list[tuple[int, int]], owned: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """The slots of `wanted` no master owns."""
    out = []
    for first, last in wanted:
        cursor = first
        for a, b in owned:
            if b < cursor or a > last:
                continue
            if a > cursor:
                out.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
        if cursor <= last:
            out.append((cursor, last))
    return out


def _address(m: CacheCluster | None) -> tuple[str, int] | None:
    if m is None or not m.status.nodes:
        return None
    return m.status.nodes[0].host, m.status.nodes[0].port

