"""The cache clusters that make up a replication group (cluster mode disabled): `<group>-001`, ...,
each one node with the group's engine, version, type and port."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.handlers import subnet_groups
from controlplane.handlers.context import RequestContext
from controlplane.model.errors import CacheClusterAlreadyExistsFault
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, CacheClusterSpec, ReplicationGroup
from controlplane.state.store import Store

MAX_MEMBERS = 6  # a primary and 5 replicas
MAX_REPLICAS = MAX_MEMBERS - 1


def member_spec(rg: ReplicationGroup, az: str | None) -> CacheClusterSpec:
    """A member cache cluster: one node, the group's engine, version, type and port (as its nodes
    run them: with what the maintenance window applied) and its changes still pending."""
    s = rg.target()
    return CacheClusterSpec(engine=s.engine, engine_version=s.engine_version, node_type=s.node_type, num_nodes=1,
                            pending=rg.unapplied(),
                            port=s.port, preferred_azs=[az] if az else [], parameter_group=s.parameter_group,
                            maintenance_window=s.maintenance_window, snapshot_window=s.snapshot_window,
                            replication_group_id=rg.id, security_group_ids=list(s.security_group_ids),
                            subnet_group=rg.spec.subnet_group,
                            auto_minor_version_upgrade=s.auto_minor_version_upgrade,
                            security=s.security.model_copy(deep=True))


def next_member_ids(rg_id: str, taken: set[str], count: int) -> list[str]:
    out: list[str] = []
    n = 0
    while len(out) < count:
        n += 1
        candidate = f"{rg_id}-{n:03d}"
        if candidate not in taken:
            out.append(candidate)
    return out


def add_members(ctx: RequestContext, rg: ReplicationGroup, count: int, azs: Sequence[str]) -> list[str]:
    """`count` new member clusters, the i-th in azs[i] where given (else, in a subnet group, spread
    over its zones); they carry the group's tags."""
    store = ctx.services.store
    if rg.spec.subnet_group:
        subnet_groups.within(subnet_groups.group_zones(ctx, rg.spec.subnet_group)[1], rg.spec.subnet_group, azs)
        if not azs:
            azs = subnet_groups.member_zones(ctx, rg, count)
    taken = {c.id for c in store.records(CacheCluster, ctx.account, ctx.region)}
    ids = next_member_ids(rg.id, taken, count)
    for i, member_id in enumerate(ids):
        record = CacheCluster(account=ctx.account, region=ctx.region, id=member_id,
                              created_at=ctx.services.clock.now(), tags=list(rg.tags),
                              spec=member_spec(rg, azs[i] if i < len(azs) else None))
        if not store.create(record):
            raise CacheClusterAlreadyExistsFault(f"Cache cluster {member_id} already exists.")
    return ids


def sync_members(store: Store, rg: ReplicationGroup) -> None:
    """Members show the group's node type, version, pending changes and security (TLS, AUTH), as
    AWS's do (written by the handlers, with the group's spec)."""
    target, pending = rg.target(), rg.unapplied()
    for member in members_of(store, rg):
        def change(c: CacheCluster) -> None:
            c.spec.node_type = target.node_type
            c.spec.engine_version = target.engine_version
            c.spec.pending = pending.model_copy()
            c.spec.security = rg.spec.security.model_copy(deep=True)
            c.spec.parameter_group = rg.spec.parameter_group

        store.update(member.key, CacheCluster, change)
