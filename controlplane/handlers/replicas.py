"""IncreaseReplicaCount, DecreaseReplicaCount and TestFailover: a replication group's replicas."""

from __future__ import annotations

from datetime import timedelta

from controlplane.handlers import cluster_replicas
from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.handlers.lookup import (
    bump_generation,
    get_group,
    group_shape,
    request_delete,
    require_available,
)
from controlplane.handlers.members import MAX_REPLICAS, add_members
from controlplane.model import messages as m
from controlplane.model.errors import (
    APICallRateForCustomerExceededFault,
    CacheClusterNotFoundFault,
    InvalidCacheClusterStateFault,
    InvalidReplicationGroupStateFault,
    NodeGroupNotFoundFault,
    TestFailoverNotAvailableFault,
)
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, FailoverRequest, ReplicationGroup

TEST_FAILOVERS_PER_DAY = 15
NODE_GROUP = "0001"  # the one node group of a group with cluster mode disabled


def increase_replica_count(ctx: RequestContext, params: m.IncreaseReplicaCountMessage) -> m.IncreaseReplicaCountResult:
    rg, members, new_count = _replica_count_change(ctx, params, removing=False)
    if rg.cluster_enabled:
        cluster_replicas.increase(ctx, rg, members, cluster_replicas.shard_changes(rg, params, members, []))
        return _changed(ctx, rg)
    current = len(members) - 1
    if new_count <= current:
        raise v.invalid(f"NewReplicaCount ({new_count}) must be greater than the current replica count ({current}).")
    if new_count > MAX_REPLICAS:
        raise v.invalid(f"A node group can have at most {MAX_REPLICAS} replicas.")
    shards = params.get("ReplicaConfiguration", [])
    azs = list(shards[0].get("PreferredAvailabilityZones", [])) if shards else []
    v.availability_zones(ctx.region, azs)
    add_members(ctx, rg, new_count - current, azs[-(new_count - current):] if azs else [])
    return _changed(ctx, rg)


def decrease_replica_count(ctx: RequestContext, params: m.DecreaseReplicaCountMessage) -> m.DecreaseReplicaCountResult:
    to_remove = [r.lower() for r in params.get("ReplicasToRemove", [])]
    rg, members, new_count = _replica_count_change(ctx, params, removing=bool(to_remove))
    if rg.cluster_enabled:
        changes = cluster_replicas.shard_changes(rg, params, members, to_remove)
        cluster_replicas.decrease(ctx, rg, members, changes, to_remove)
        return _changed(ctx, rg)
    current = len(members) - 1
    ids = {c.id for c in members}
    for member_id in to_remove:
        if member_id not in ids:
            raise CacheClusterNotFoundFault(f"CacheCluster not found: {member_id}")
        if member_id == rg.status.primary:
            raise v.invalid(f"Cannot remove the primary cluster {member_id}; only replicas can be removed.")
    if new_count < 0:
        new_count = current - len(to_remove)
    if new_count >= current:
        raise v.invalid(f"NewReplicaCount ({new_count}) must be less than the current replica count ({current}).")
    if new_count < 0:
        raise v.invalid("NewReplicaCount must not be negative.")
    if rg.spec.automatic_failover and new_count < 1:
        raise v.invalid("Must have at least 1 replica when cluster mode is disabled with auto failover enabled.")
    if to_remove and len(to_remove) != current - new_count:
        raise v.invalid(f"ReplicasToRemove must list {current - new_count} replica(s).")
    if not to_remove:  # the newest replicas go first
        to_remove = [c.id for c in reversed(members) if c.id != rg.status.primary][: current - new_count]
    for member in members:
        if member.id in to_remove:
            ctx.services.store.update(member.key, CacheCluster, request_delete)
    return _changed(ctx, rg)


def _replica_count_change(ctx: RequestContext, params: m.IncreaseReplicaCountMessage | m.DecreaseReplicaCountMessage,
                          removing: bool) -> tuple[ReplicationGroup, list[CacheCluster], int]:
    """The group, its members, and the replica count asked for (-1: as many as ReplicasToRemove leaves)."""
    rg = get_group(ctx, params["ReplicationGroupId"])
    if not params.get("ApplyImmediately"):
        raise v.invalid("ApplyImmediately=false is not supported: replica counts change immediately.")
    require_available(rg)
    members = members_of(ctx.services.store, rg)
    if rg.cluster_enabled:  # per node group: cluster_replicas.py
        return rg, members, -1
    new_count = params.get("NewReplicaCount")
    shards = params.get("ReplicaConfiguration", [])
    if shards:
        if len(shards) != 1 or shards[0]["NodeGroupId"] != NODE_GROUP:
            raise NodeGroupNotFoundFault(f"The replication group has one node group, {NODE_GROUP}.")
        new_count = shards[0]["NewReplicaCount"]
    if new_count is None and not removing:
        raise v.invalid("NewReplicaCount or ReplicaConfiguration must be given.")
    return rg, members, -1 if new_count is None else new_count


def _changed(ctx: RequestContext, rg: ReplicationGroup) -> m.ModifyReplicationGroupResult:
    updated = ctx.services.store.update(rg.key, ReplicationGroup, bump_generation)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    return {"ReplicationGroup": group_shape(ctx, updated)}


def test_failover(ctx: RequestContext, params: m.TestFailoverMessage) -> m.TestFailoverResult:
    rg = get_group(ctx, params["ReplicationGroupId"])
    node_group = params["NodeGroupId"]
    shards = [g.id for g in rg.spec.node_groups] or [NODE_GROUP]
    if node_group not in shards:
        raise NodeGroupNotFoundFault(f"NodeGroup {node_group} not found.")
    if rg.status.failover is not None or (rg.spec.test_failover and
                                          rg.spec.test_failover.seq > rg.status.test_failover_done):
        raise InvalidReplicationGroupStateFault(f"A failover of replication group {rg.id} is already in progress.")
    require_available(rg)
    members = members_of(ctx.services.store, rg)
    busy = [c.id for c in members if c.api_status() != "available"]
    if busy:
        raise InvalidCacheClusterStateFault(
            f"Cache cluster(s) {', '.join(busy)} of replication group {rg.id} are not available.")
    if rg.cluster_enabled:
        members = [c for c in members if c.spec.node_group_id == node_group]
    if not rg.spec.automatic_failover or len(members) < 2:
        raise TestFailoverNotAvailableFault(f"Test failover is not available for replication group {rg.id}: it needs "
                                            "automatic failover enabled and at least one replica.")
    now = ctx.services.clock.now()
    recent = [t for t in rg.spec.test_failover_calls if now - t < timedelta(hours=24)]
    if len(recent) >= TEST_FAILOVERS_PER_DAY:
        raise APICallRateForCustomerExceededFault(f"TestFailover can be called for at most {TEST_FAILOVERS_PER_DAY} "
                                                  "node groups in a rolling 24-hour period.")

    def change(r: ReplicationGroup) -> None:
        seq = max(r.spec.test_failover.seq if r.spec.test_failover else 0, r.status.test_failover_done) + 1
        r.spec.test_failover = FailoverRequest(seq=seq, node_group=node_group, requested_at=now)
        r.spec.test_failover_calls = [*recent, now]

    updated = ctx.services.store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    shape = group_shape(ctx, updated)
    # AWS answers with the group as it was when the request was accepted: available.
    shape["Status"] = "available"
    return {"ReplicationGroup": shape}
