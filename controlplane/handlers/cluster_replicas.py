"""IncreaseReplicaCount and DecreaseReplicaCount on a cluster-mode group: replicas per node group
(shard), with NewReplicaCount (every shard), ReplicaConfiguration (the shards listed, each with its
count and zones) or ReplicasToRemove. AWS's rules: 0 to 5 replicas per shard (at least 1 with
Multi-AZ), the cluster's node quota, zones that number the shard's nodes (NewReplicaCount + 1).
New members are `<group>-<shard>-00N`; the reconciler meets them into the cluster and makes them
replicate their shard's primary, and forgets and stops the ones removed."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.handlers import subnet_groups
from controlplane.handlers import validate as v
from controlplane.handlers.cluster_mode import MAX_NODES
from controlplane.handlers.context import RequestContext
from controlplane.handlers.lookup import request_delete
from controlplane.handlers.members import MAX_REPLICAS, member_spec, next_member_ids
from controlplane.model import messages as m
from controlplane.model.errors import (
    CacheClusterAlreadyExistsFault,
    CacheClusterNotFoundFault,
    NodeGroupNotFoundFault,
    NodeQuotaForClusterExceededFault,
)
from controlplane.state.records import CacheCluster, ReplicationGroup


@dataclass(frozen=True)
class ShardChange:
    node_group: str
    count: int  # the replicas wanted
    azs: list[str]  # the shard's nodes' zones as asked (primary first), or none


def shard_changes(rg: ReplicationGroup, params: m.IncreaseReplicaCountMessage | m.DecreaseReplicaCountMessage,
                  members: list[CacheCluster], removing: list[str]) -> list[ShardChange]:
    """The shards a request changes and the replica count each should have."""
    shards = {g.id for g in rg.spec.node_groups}
    ids = {c.id for c in members}
    for member_id in removing:
        if member_id not in ids:
            raise CacheClusterNotFoundFault(f"CacheCluster not found: {member_id}")
    configs = list(params.get("ReplicaConfiguration", []))
    count = params.get("NewReplicaCount")
    if configs and count is not None:
        raise v.combination("Specify either NewReplicaCount or ReplicaConfiguration, not both.")
    out: list[ShardChange] = []
    for config in configs:
        shard = config["NodeGroupId"]
        if shard not in shards:
            raise NodeGroupNotFoundFault(f"NodeGroup {shard} not found in replication group {rg.id}.")
        if any(c.node_group == shard for c in out):
            raise v.invalid(f"NodeGroupId {shard} is given more than once in ReplicaConfiguration.")
        azs, wanted = list(config.get("PreferredAvailabilityZones", [])), config["NewReplicaCount"]
        if azs and len(azs) != wanted + 1:
            raise v.combination(f"Node group {shard}: PreferredAvailabilityZones must name {wanted + 1} zones "
                                "(NewReplicaCount plus 1 for the primary).")
        out.append(ShardChange(shard, wanted, azs))
    if count is not None:
        out = [ShardChange(g.id, count, []) for g in rg.spec.node_groups]
    if not out and removing:  # ReplicasToRemove alone: the shards of the replicas named, each less those
        by_id = {c.id: c for c in members}
        named = [by_id[i].spec.node_group_id or "" for i in removing]
        for shard in sorted(set(named)):
            out.append(ShardChange(shard, _replicas(members, shard) - named.count(shard), []))
    if not out:
        raise v.invalid("NewReplicaCount, ReplicaConfiguration or ReplicasToRemove must be given.")
    for change in out:
        if not 0 <= change.count <= MAX_REPLICAS:
            raise v.invalid(f"NewReplicaCount for node group {change.node_group} must be between 0 and "
                            f"{MAX_REPLICAS}.")
        if rg.spec.multi_az and change.count < 1:
            raise v.invalid(f"Node group {change.node_group} must keep at least 1 replica while Multi-AZ is enabled.")
    return out


def increase(ctx: RequestContext, rg: ReplicationGroup, members: list[CacheCluster],
             changes: list[ShardChange]) -> None:
    """New replicas in the shards that get more; every shard listed must."""
    added = {c.node_group: c.count - _replicas(members, c.node_group) for c in changes}
    for change in changes:
        if added[change.node_group] <= 0:
            raise v.invalid(f"NewReplicaCount ({change.count}) for node group {change.node_group} must be greater than "
                            f"its current replica count ({_replicas(members, change.node_group)}).")
        v.availability_zones(ctx.region, change.azs)
    total = len(members) + sum(added.values())
    if total > MAX_NODES:
        raise NodeQuotaForClusterExceededFault(
            f"The replication group would have {total} nodes; at most {MAX_NODES} are allowed per cluster.")
    store = ctx.services.store
    _, zones = subnet_groups.group_zones(ctx, rg.spec.subnet_group)
    taken = {c.id for c in store.records(CacheCluster, ctx.account, ctx.region)}
    for change in changes:
        count = added[change.node_group]
        azs = change.azs[-count:] if change.azs else []
        subnet_groups.within(zones, rg.spec.subnet_group, azs)
        if zones and not azs:
            azs = subnet_groups.spread(zones, [a for c in members if c.spec.node_group_id == change.node_group
                                               for a in c.spec.preferred_azs], count)
        for i, member_id in enumerate(next_member_ids(f"{rg.id}-{change.node_group.lower()}", taken, count)):
            spec = member_spec(rg, azs[i] if i < len(azs) else None)
            spec.node_group_id = change.node_group
            record = CacheCluster(account=ctx.account, region=ctx.region, id=member_id,
                                  created_at=ctx.services.clock.now(), tags=list(rg.tags), spec=spec)
            if not store.create(record):
                raise CacheClusterAlreadyExistsFault(f"Cache cluster {member_id} already exists.")
            taken.add(member_id)
    _record_counts(ctx, rg, changes)


def decrease(ctx: RequestContext, rg: ReplicationGroup, members: list[CacheCluster],
             changes: list[ShardChange], removing: list[str]) -> None:
    """Replicas asked to go (named, else the shard's newest) are marked for deletion."""
    by_id = {c.id: c for c in members}
    primaries = set(rg.status.shard_primaries.values())
    for member_id in removing:  # each a member: shard_changes checked
        if member_id in primaries:
            raise v.invalid(f"Cannot remove {member_id}: it is the primary of its node group; only replicas can be "
                            "removed.")
    changed = {c.node_group for c in changes}
    stray = sorted(i for i in removing if by_id[i].spec.node_group_id not in changed)
    if stray:
        raise v.combination(f"ReplicasToRemove names {', '.join(stray)}, of node groups this request does not change.")
    chosen: list[str] = []
    for change in changes:
        current = _replicas(members, change.node_group)
        fewer = current - change.count
        if fewer <= 0:
            raise v.invalid(f"NewReplicaCount ({change.count}) for node group {change.node_group} must be less than "
                            f"its current replica count ({current}).")
        named = [i for i in removing if by_id[i].spec.node_group_id == change.node_group]
        if removing and len(named) != fewer:
            raise v.invalid(f"ReplicasToRemove must name {fewer} replica(s) of node group {change.node_group}.")
        replicas = [c.id for c in members if c.spec.node_group_id == change.node_group and c.id not in primaries]
        chosen += named or sorted(replicas, reverse=True)[:fewer]  # the newest go first
    for member_id in chosen:
        ctx.services.store.update(by_id[member_id].key, CacheCluster, request_delete)
    _record_counts(ctx, rg, changes)


def _replicas(members: list[CacheCluster], shard: str) -> int:
    return len([c for c in members if c.spec.node_group_id == shard and not c.spec.delete_requested]) - 1


def _record_counts(ctx: RequestContext, rg: ReplicationGroup, changes: list[ShardChange]) -> None:
    counts = {c.node_group: c.count for c in changes}

    def change(r: ReplicationGroup) -> None:
        for group in r.spec.node_groups:
            group.replica_count = counts.get(group.id, group.replica_count)

    ctx.services.store.update(rg.key, ReplicationGroup, change)
