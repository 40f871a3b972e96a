"""A group's member clusters and their nodes: planned (an id, a zone, an address each), started
with their role, awaited until they really replicate, recovered when they die, rebooted on request.

This reconciler is the only actor on its members' nodes: the cache-cluster reconciler hands
member clusters over to it, so no two loops ever race on a node."""

from __future__ import annotations

from functools import partial

from controlplane import catalog
from controlplane.reconciler import parameters, texts
from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.infra import build_node_config
from controlplane.reconciler.nodes import PROBE_TIMEOUT
from controlplane.reconciler.replication_groups.context import CC, NODE_ID, RG, GroupContext, member, replaced
from controlplane.reconciler.replication_groups.endpoints import Endpoints
from controlplane.reconciler.replication_groups.restore import GroupRestore
from controlplane.reconciler.replication_groups.security import plain_link
from controlplane.reconciler.security import tls_of
from controlplane.state.acl import node_acl
from controlplane.state.global_datastores import primary_upstream, role_held
from controlplane.state.records import CacheCluster, NodeStatus, ReplicationGroup
from engine import ProbeResult, RuntimeError_


class Members:
    def __init__(self, ctx: GroupContext, endpoints: Endpoints, restore: GroupRestore) -> None:
        self._ctx = ctx
        self._endpoints = endpoints
        self._restore = restore
        # Starting replica's node -> (the primary it follows, a mark put in that primary's stream).
        # Kept between passes only to spare a mark; lost on a restart, a new mark is taken.
        self._marks: dict[str, tuple[str, int]] = {}

    def own(self, rg: ReplicationGroup, member_id: str) -> None:
        self._ctx.nodes.own(self._ctx.name(rg, member_id), rg.key, slow=False)

    def plan(self, rg: ReplicationGroup, members: list[CacheCluster]) -> list[CacheCluster]:
        """Give every member without a node a node slot: id 0001, an AZ, an address of its own."""
        ctx, out = self._ctx, []
        zones = catalog.availability_zones(rg.region)
        for index, m in enumerate(members):
            if not m.status.nodes:
                with ctx.infra.alloc_lock:
                    host, port = ctx.infra.allocate(ctx.infra.node_addresses, rg.spec.port, ctx.store)
                    # Without a preference, members are spread over the region's zones as AWS does.
                    az = m.spec.preferred_azs[0] if m.spec.preferred_azs else zones[index % len(zones)]
                    node = NodeStatus(node_id=NODE_ID, status="creating", az=az, host=host, port=port,
                                      created_at=ctx.clock.now())

                    def add(c: CacheCluster, node: NodeStatus = node) -> None:
                        c.status.nodes = [node]
                        c.status.phase = c.status.phase or "creating"
                        c.status.last_node_number = 1

                    m = ctx.update_member(m, add)
                ctx.emit(CC, m.id, rg, f"Added cache node {NODE_ID} in availability zone {node.az}")
            self.own(rg, m.id)
            out.append(m)
        return out

    def remove(self, rg: ReplicationGroup,
               members: list[CacheCluster]) -> tuple[ReplicationGroup, list[CacheCluster]]:
        """Members whose deletion was asked (never the primary) go, node and record."""
        keep = []
        for m in members:
            if not m.spec.delete_requested or m.id == rg.status.primary:
                keep.append(m)
                continue
            self._ctx.nodes.discard(self._ctx.name(rg, m.id))
            if rg.status.reader_on == m.id:
                rg = self._ctx.write(rg, lambda s: setattr(s, "reader_on", None))
            self._ctx.store.delete(m.key)
            self._ctx.emit(CC, m.id, rg, "Cache cluster deleted")
        return rg, keep

    def run(self, rg: ReplicationGroup, members: list[CacheCluster], version: str,
            hold_primary: bool = False) -> tuple[list[CacheCluster], list[str], list[str]]:
        """Every member's node runs with its role: the dead are started again (the primary in
        place unless `hold_primary`: a failover waits for it). Returns the members, those still
        starting, and those blocked by their interrupted zone."""
        ctx = self._ctx
        primary = member(members, rg.status.primary)
        starting: list[str] = []
        blocked: list[str] = []
        for m in members:
            node = m.status.nodes[0]
            if ctx.nodes.running(ctx.name(rg, m.id), node.status == "available"):
                if node.status != "available":
                    starting.append(m.id)
                continue
            if hold_primary and m.id == rg.status.primary:
                continue
            if primary is None:
                raise TemporaryError("no primary to replicate from")
            if ctx.infra.az_down(node.az, ctx.clock.monotonic()):
                # Seen down in an interrupted zone: recovered afterwards, and reads so meanwhile.
                if node.status == "available":
                    ctx.emit(CC, m.id, rg, f"Recovering cache nodes {NODE_ID}")
                    members = replaced(members, ctx.set_member_node(m, "rebooting"))
                blocked.append(m.id)
                continue
            if node.status == "available":
                ctx.emit(CC, m.id, rg, f"Recovering cache nodes {NODE_ID}")
                m = ctx.set_member_node(m, "rebooting")
            members = replaced(members, self.start(rg, m, primary, version))
            starting.append(m.id)
        waiting: list[str] = []
        if starting:
            members, waiting = self.await_ready(rg, members, starting)
        if not waiting:
            self.converge_roles(rg, members)
        return members, waiting, blocked

    def start(self, rg: ReplicationGroup, m: CacheCluster, primary: CacheCluster, version: str,
              fresh: bool = False) -> CacheCluster:
        """Start the member's node as the primary or as a replica of `primary` (`fresh`: empty)."""
        ctx = self._ctx
        name = ctx.name(rg, m.id)
        node = m.status.nodes[0]
        settings: dict[str, str] = {}
        source = primary_upstream(ctx.store, rg)
        if m.id != primary.id:
            p = primary.status.nodes[0]
            settings["replicaof"] = f"{p.host} {p.port}"
        elif source is not None:  # an online migration's source, or a global datastore's primary
            settings["replicaof"] = f"{source[0]} {source[1]}"
        extra = self._endpoints.wanted(rg, m.id)
        if extra:
            settings["bind"] = " ".join(extra)
        if fresh:
            ctx.infra.runtime.remove(name)  # a new replica starts empty and syncs from the primary
        node_type = rg.target().node_type
        acl = node_acl(ctx.store, rg)
        # Every address a client may reach this node by: its own, and the group's endpoints (they
        # float between members, so every member's certificate names them all).
        names = [node.host, *(h for h in (rg.status.primary_host, rg.status.reader_host) if h)]
        params = parameters.wanted(ctx.store, m)
        plain = acl.tls and plain_link(ctx.members(rg), m.id)
        config = build_node_config(name=name, engine=rg.spec.engine, version=version, host=node.host,
                                   port=node.port, node_type=node_type,
                                   labels={"account": rg.account, "region": rg.region, "cluster": m.id,
                                           "node": NODE_ID, "group": rg.id},
                                   settings=settings, security=ctx.infra.node_security(acl, names, plain),
                                   parameters=params)
        seeding = m.id == primary.id and self._restore.pending(rg, m.id)
        if seeding:
            config = self._restore.seeded(rg, config)
        ctx.nodes.start(config, m.id, temporary_delay=0.3)
        if seeding:  # only a node really started with the file can have failed to load it
            self._restore.started(rg)
        self._marks.pop(name, None)

        def started(c: CacheCluster) -> None:
            c.status.nodes[0].node_type = node_type
            c.status.nodes[0].addresses = list(extra)
            c.status.nodes[0].tls = tls_of(acl)
            parameters.started_with(c.status.nodes[0], params)
            c.status.nodes[0].plain_link = plain

        return ctx.update_member(m, started)

    def await_ready(self, rg: ReplicationGroup, members: list[CacheCluster],
                    ids: list[str]) -> tuple[list[CacheCluster], list[str]]:
        """The started members answer with the right role; a replica is ready only once it has
        received a mark put in the primary's stream after its link came up (a link can be "up"
        while the primary still holds the stream back, e.g. for a second after a `CONFIG SET
        bind` during the first sync). Returns the members and the ids still not ready."""
        ctx = self._ctx
        by_name = {ctx.name(rg, i): i for i in ids}
        current = [members]

        def ready(name: str) -> bool:
            m = member(current[0], by_name[name])
            if m is None:
                return True
            result = ctx.infra.runtime.probe(name, PROBE_TIMEOUT)
            if not result.ok or not _role_ok(rg, m.id, result, primary_upstream(ctx.store, rg)):
                return False
            if m.id != rg.status.primary and rg.status.primary is not None:
                mark = self._marks.get(name)
                if mark is None or mark[0] != rg.status.primary:
                    try:
                        self._marks[name] = (rg.status.primary,
                                             ctx.infra.runtime.replication_mark(ctx.name(rg, rg.status.primary)))
                    except RuntimeError_ as exc:
                        raise TemporaryError(str(exc)) from exc
                    return False
                if offset(result) < mark[1]:
                    return False
            self._marks.pop(name, None)
            was, planned = m.status.nodes[0].status, m.status.nodes[0].planned
            current[0] = replaced(current[0], ctx.set_member_node(m, "available", version=result.version))
            if planned is not None:
                self.restarted(rg, current[0], m.id, planned)
            elif was == "rebooting":
                ctx.emit(CC, m.id, rg, f"Finished recovery for cache nodes {NODE_ID}")
            return True

        waiting = ctx.nodes.await_ready(list(by_name), ready)
        return current[0], [by_name[n] for n in waiting]

    def restarted(self, rg: ReplicationGroup, members: list[CacheCluster], member_id: str, planned: str) -> None:
        """A member restarted on purpose answers: AWS's texts (a reboot has its own), member by
        member as AWS writes them; the node type change's once every member has the new type."""
        if planned == texts.REBOOT:
            return
        ctx = self._ctx
        ctx.emit(CC, member_id, rg, texts.restarted(NODE_ID))
        if planned == texts.PATCH:
            ctx.emit(CC, member_id, rg, texts.PATCHED)
        node_type = rg.target().node_type
        if planned == texts.SCALE and all(m.status.nodes and m.status.nodes[0].node_type == node_type
                                          and m.status.nodes[0].planned is None for m in members):
            ctx.emit(RG, rg.id, rg, texts.scaled(node_type))

    def converge_roles(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        """Level-triggered: a node whose role is not what the group's status says is told."""
        ctx = self._ctx
        primary = member(members, rg.status.primary)
        if primary is None or rg.status.failover is not None:
            return
        p = primary.status.nodes[0]
        source = primary_upstream(ctx.store, rg)
        held = role_held(ctx.store, rg)
        for m in members:
            name = ctx.name(rg, m.id)
            result = ctx.health.last_probe(name) or ctx.infra.runtime.probe(name, PROBE_TIMEOUT)
            if not result.ok:
                continue
            try:
                if m.id == primary.id and held:
                    continue  # a global datastore's failover moves this role
                if m.id == primary.id and source is not None:
                    if (result.role, result.details.get("master_host"), result.details.get("master_port")) != (
                            "slave", source[0], str(source[1])):
                        ctx.infra.runtime.replicate(name, source)
                elif m.id == primary.id and result.role != "master":
                    ctx.infra.runtime.replicate(name, None)
                elif m.id != primary.id and result.role == "master":
                    ctx.infra.runtime.replicate(name, (p.host, p.port))
            except RuntimeError_ as exc:
                raise TemporaryError(str(exc)) from exc

    def reboot(self, rg: ReplicationGroup, members: list[CacheCluster],
               version: str) -> tuple[list[CacheCluster], list[str]]:
        """RebootCacheCluster on a member: restart its node in place (no failover, as in AWS).
        Returns the members and the ids still restarting."""
        ctx = self._ctx
        primary = member(members, rg.status.primary)
        for m in members:
            request = m.spec.reboot
            if request is None or request.seq <= m.status.rebooted_seq or primary is None:
                continue
            if m.status.reboot_started < request.seq:  # not restarted by an earlier pass
                name = ctx.name(rg, m.id)
                m = ctx.set_member_node(m, "rebooting", planned=texts.REBOOT)
                ctx.infra.runtime.stop(name)
                ctx.emit(CC, m.id, rg, texts.shutdown(NODE_ID))
                m = self.start(rg, m, primary, version)
                m = ctx.update_member(m, partial(_set_status, field="reboot_started", value=request.seq))
                members = replaced(members, m)
            members, waiting = self.await_ready(rg, members, [m.id])
            if waiting:
                return members, waiting
            ctx.emit(CC, m.id, rg, f"Cache node {NODE_ID} restarted")
            members = replaced(members, ctx.update_member(
                m, partial(_set_status, field="rebooted_seq", value=request.seq)))
        return members, []


def eligible(ctx: GroupContext, rg: ReplicationGroup, members: list[CacheCluster], old: str,
             excluded: list[str]) -> list[tuple[CacheCluster, ProbeResult]]:
    """The replicas that could be promoted now: answering, as replicas."""
    out = []
    for m in members:
        if m.id == old or m.id in excluded or not m.status.nodes:
            continue
        result = ctx.probe(rg, m.id)
        if result.ok and result.role == "slave":
            out.append((m, result))
    return out


def _set_status(c: CacheCluster, field: str, value: int) -> None:
    setattr(c.status, field, value)


def _role_ok(rg: ReplicationGroup, member_id: str, result: ProbeResult, upstream: tuple[str, int] | None) -> bool:
    if member_id == rg.status.primary:
        # The primary of a migrating group or of a global datastore's secondary is a replica
        # (of the source, of the primary region); its link may be down.
        return result.role == ("slave" if upstream is not None else "master")
    return result.role == "slave" and result.details.get("master_link_status") == "up"


def offset(result: ProbeResult) -> int:
    """A replica's replication offset (failover prefers the highest)."""
    try:
        return int(result.details.get("slave_repl_offset", "0"))
    except ValueError:
        return 0
