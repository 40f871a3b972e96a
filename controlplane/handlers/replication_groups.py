"""Replication groups, cluster mode disabled: Create, Describe, Modify, Delete,
Increase/DecreaseReplicaCount, TestFailover. Members are cache clusters `<rg>-001`, ..."""

from __future__ import annotations

from datetime import timedelta

from controlplane import catalog
from controlplane.handlers import validate as v
from controlplane.handlers.cache_clusters import (
    _default_snapshot_window,
    _default_window,
    _engine_version,
    _node_type,
    _tags,
    _version_tuple,
    unchanged_since_read,
)
from controlplane.handlers.context import Handler, Params, RequestContext, Result
from controlplane.protocol.errors import ServiceError
from controlplane.state import shapes
from controlplane.state.members import members_of, sync_members
from controlplane.state.records import (
    CacheCluster,
    CacheClusterSpec,
    FailoverRequest,
    PendingChanges,
    PrimaryChange,
    ReplicationGroup,
    ReplicationGroupSpec,
)

MAX_MEMBERS = 6  # a primary and 5 replicas
TEST_FAILOVERS_PER_DAY = 15


def get_group(ctx: RequestContext, group_id: str) -> ReplicationGroup:
    rg = ctx.services.store.get(ctx.key(ReplicationGroup.KIND, group_id.lower()), ReplicationGroup)
    if rg is None:
        raise ServiceError("ReplicationGroupNotFoundFault", f"ReplicationGroup {group_id} not found.")
    return rg


def _require_available(rg: ReplicationGroup) -> None:
    if rg.api_status() != "available":
        raise ServiceError("InvalidReplicationGroupStateFault",
                           f"Replication group {rg.id} is not in the available state (it is {rg.api_status()}).")


def _shape(ctx: RequestContext, rg: ReplicationGroup) -> Result:
    return {"ReplicationGroup": shapes.replication_group(rg, members_of(ctx.services.store, rg))}


def member_spec(rg: ReplicationGroup, az: str | None) -> CacheClusterSpec:
    """A member cache cluster: one node, the group's engine, version, type and port."""
    s = rg.spec
    return CacheClusterSpec(engine=s.engine, engine_version=s.engine_version, node_type=s.node_type, num_nodes=1,
                            port=s.port, preferred_azs=[az] if az else [], parameter_group=s.parameter_group,
                            maintenance_window=s.maintenance_window, snapshot_window=s.snapshot_window,
                            replication_group_id=None if rg is None else rg.id,
                            security_group_ids=list(s.security_group_ids),
                            auto_minor_version_upgrade=s.auto_minor_version_upgrade)


def _next_member_ids(rg_id: str, taken: set[str], count: int) -> list[str]:
    out: list[str] = []
    n = 0
    while len(out) < count:
        n += 1
        candidate = f"{rg_id}-{n:03d}"
        if candidate not in taken:
            out.append(candidate)
    return out


def _check_azs(ctx: RequestContext, azs: list[str]) -> None:
    zones = catalog.availability_zones(ctx.region)
    for az in azs:
        if az not in zones:
            raise v.invalid(f"Invalid availability zone: {az}. Valid zones in {ctx.region}: {', '.join(zones)}.")


def _add_members(ctx: RequestContext, rg: ReplicationGroup, count: int, azs: list[str]) -> list[str]:
    store = ctx.services.store
    taken = {c.id for c in store.records(CacheCluster, ctx.account, ctx.region)}
    ids = _next_member_ids(rg.id, taken, count)
    for i, member_id in enumerate(ids):
        record = CacheCluster(account=ctx.account, region=ctx.region, id=member_id,
                              created_at=ctx.services.clock.now(), tags=list(rg.tags),
                              spec=member_spec(rg, azs[i] if i < len(azs) else None))
        if not store.create(record):
            raise ServiceError("CacheClusterAlreadyExistsFault", f"Cache cluster {member_id} already exists.")
    return ids


def create_replication_group(ctx: RequestContext, params: Params) -> Result:
    group_id = v.resource_id(params["ReplicationGroupId"], "ReplicationGroupId", 40)
    store = ctx.services.store
    if store.get(ctx.key(ReplicationGroup.KIND, group_id), ReplicationGroup) is not None:
        raise ServiceError("ReplicationGroupAlreadyExistsFault", f"Replication group {group_id} already exists.")
    if (params.get("NumNodeGroups") or 1) > 1 or (params.get("ClusterMode") or "disabled").lower() != "disabled" \
            or len(params.get("NodeGroupConfiguration") or []) > 1:
        raise v.combination("Cluster mode (more than one node group) is not supported by elasticache-local yet.")
    for name in ("SnapshotName", "SnapshotArns", "GlobalReplicationGroupId", "UserGroupIds",
                 "ServerlessCacheSnapshotName"):
        if params.get(name):
            raise v.combination(f"{name} is not supported by elasticache-local yet.")
    if params.get("AuthToken") and not params.get("TransitEncryptionEnabled"):
        raise v.combination("AuthToken requires TransitEncryptionEnabled to be true.")
    if params.get("TransitEncryptionEnabled") or params.get("AtRestEncryptionEnabled"):
        raise v.combination("Encryption (TLS, at rest) is not supported by elasticache-local yet.")
    if params.get("CacheSubnetGroupName"):
        raise ServiceError("CacheSubnetGroupNotFoundFault",
                           f"CacheSubnetGroup {params['CacheSubnetGroupName']} not found.")

    primary: CacheCluster | None = None
    if params.get("PrimaryClusterId"):
        primary = store.get(ctx.key(CacheCluster.KIND, params["PrimaryClusterId"].lower()), CacheCluster)
        if primary is None:
            raise ServiceError("CacheClusterNotFoundFault", f"CacheCluster not found: {params['PrimaryClusterId']}")
        if primary.spec.engine != "redis" or primary.spec.replication_group_id:
            raise ServiceError("InvalidCacheClusterStateFault",
                               f"Cache cluster {primary.id} cannot be the primary of a replication group.")
        if primary.api_status() != "available":
            raise ServiceError("InvalidCacheClusterStateFault", f"Cache cluster {primary.id} is not available.")

    engine = (params.get("Engine") or (primary.spec.engine if primary else "redis")).lower()
    if engine not in ("redis", "valkey"):
        raise v.invalid(f"Invalid engine: {params.get('Engine')}. Replication groups run redis or valkey.")
    if engine not in ctx.services.available_versions():
        raise v.invalid(f"No {engine} server is installed on this machine (install valkey-server for Valkey).")
    node_type = primary.spec.node_type if primary and not params.get("CacheNodeType") else _node_type(
        params.get("CacheNodeType"))
    version = primary.spec.engine_version if primary and not params.get("EngineVersion") else _engine_version(
        ctx, engine, params.get("EngineVersion"))

    # How many members: NumCacheClusters, or 1 + ReplicasPerNodeGroup / the node group's ReplicaCount.
    ng = (params.get("NodeGroupConfiguration") or [{}])[0]
    replicas = params.get("ReplicasPerNodeGroup", ng.get("ReplicaCount"))
    if params.get("NumCacheClusters") is not None and replicas is not None:
        raise v.combination("Specify either NumCacheClusters or ReplicasPerNodeGroup, not both.")
    if replicas is not None:
        if not 0 <= replicas <= 5:
            raise v.invalid("ReplicasPerNodeGroup must be between 0 and 5.")
        total = replicas + 1
    else:
        total = params.get("NumCacheClusters") or 1
        if not 1 <= total <= MAX_MEMBERS:
            raise v.invalid(f"NumCacheClusters must be between 1 and {MAX_MEMBERS}.")
    automatic = bool(params.get("AutomaticFailoverEnabled"))
    multi_az = bool(params.get("MultiAZEnabled"))
    if automatic and total < 2:
        if replicas is not None:
            raise v.invalid("Must have at least 1 replica when cluster mode is disabled with auto failover enabled.")
        raise v.combination(
            "When using automatic failover, there must be at least 2 cache clusters in the replication group.")
    if multi_az and not automatic:
        raise v.combination("Multi-AZ requires automatic failover to be enabled.")
    azs = list(params.get("PreferredCacheClusterAZs") or [])
    if ng.get("PrimaryAvailabilityZone") or ng.get("ReplicaAvailabilityZones"):
        azs = [ng.get("PrimaryAvailabilityZone") or "", *(ng.get("ReplicaAvailabilityZones") or [])]
        azs = [a for a in azs if a] if all(azs) else azs
    if azs and len(azs) != total:
        raise v.combination(f"The number of availability zones ({len(azs)}) must equal the number of cache "
                            f"clusters ({total}).")
    _check_azs(ctx, [a for a in azs if a])
    port = params.get("Port") or (primary.spec.port if primary else catalog.DEFAULT_PORTS[engine])
    if not 1 <= port <= 65535:
        raise v.invalid(f"Invalid port: {port}")
    family = catalog.family_of(engine, version)
    parameter_group = params.get("CacheParameterGroupName") or f"default.{family}"
    if parameter_group != f"default.{family}":
        raise ServiceError("CacheParameterGroupNotFoundFault", f"CacheParameterGroup {parameter_group} not found.")
    window = v.maintenance_window(params["PreferredMaintenanceWindow"]) if params.get(
        "PreferredMaintenanceWindow") else _default_window(group_id, ctx.region)
    snapshot_window = v.snapshot_window(params["SnapshotWindow"]) if params.get(
        "SnapshotWindow") else _default_snapshot_window(group_id)
    retention = params.get("SnapshotRetentionLimit", 0)
    if not 0 <= retention <= 35:
        raise v.invalid("SnapshotRetentionLimit must be between 0 and 35 days.")
    tags = _tags(params)
    if (params.get("NetworkType") or "ipv4") != "ipv4" or (params.get("IpDiscovery") or "ipv4") != "ipv4":
        raise v.invalid("Only the ipv4 network type is supported by elasticache-local.")

    rg = ReplicationGroup(
        account=ctx.account, region=ctx.region, id=group_id, created_at=ctx.services.clock.now(), tags=tags,
        spec=ReplicationGroupSpec(
            description=params["ReplicationGroupDescription"], engine=engine, engine_version=version,
            node_type=node_type, port=port, parameter_group=parameter_group, maintenance_window=window,
            snapshot_window=snapshot_window, snapshot_retention_limit=retention,
            notification_topic_arn=params.get("NotificationTopicArn"),
            auto_minor_version_upgrade=params.get("AutoMinorVersionUpgrade", True),
            security_group_ids=list(params.get("SecurityGroupIds") or []),
            security_group_names=list(params.get("CacheSecurityGroupNames") or []),
            automatic_failover=automatic, multi_az=multi_az,
            initial_primary=primary.id if primary else None,
        ),
    )
    if not store.create(rg):
        raise ServiceError("ReplicationGroupAlreadyExistsFault", f"Replication group {group_id} already exists.")
    if primary is not None:
        def join(c: CacheCluster) -> None:
            c.spec.replication_group_id = group_id
        store.update(primary.key, CacheCluster, join)
        _add_members(ctx, rg, total - 1, azs[1:])
    else:
        _add_members(ctx, rg, total, azs)
    ctx.services.enqueue(rg.key)
    return _shape(ctx, rg)


def describe_replication_groups(ctx: RequestContext, params: Params) -> Result:
    store = ctx.services.store
    if params.get("ReplicationGroupId"):
        groups = [get_group(ctx, params["ReplicationGroupId"])]
    else:
        groups = store.records(ReplicationGroup, ctx.account, ctx.region)
    chunk, marker = v.page(groups, params, key=lambda g: store.seq(g.key))
    out: Result = {"ReplicationGroups": [shapes.replication_group(g, members_of(store, g)) for g in chunk]}
    if marker:
        out["Marker"] = marker
    return out


def modify_replication_group(ctx: RequestContext, params: Params) -> Result:
    rg = get_group(ctx, params["ReplicationGroupId"])
    _require_available(rg)
    store = ctx.services.store
    members = members_of(store, rg)
    spec = rg.spec.model_copy(deep=True)
    bump = False
    if "AutomaticFailoverEnabled" in params:
        spec.automatic_failover = bool(params["AutomaticFailoverEnabled"])
        if spec.automatic_failover and len(members) < 2:
            raise v.combination(
                "When using automatic failover, there must be at least 2 cache clusters in the replication group.")
        bump = bump or spec.automatic_failover != rg.spec.automatic_failover
    if "MultiAZEnabled" in params:
        spec.multi_az = bool(params["MultiAZEnabled"])
    if spec.multi_az and not spec.automatic_failover:
        raise v.combination("Multi-AZ requires automatic failover to be enabled.")
    if params.get("PrimaryClusterId"):
        target = params["PrimaryClusterId"].lower()
        if target not in {m.id for m in members}:
            raise ServiceError("CacheClusterNotFoundFault", f"CacheCluster not found: {params['PrimaryClusterId']}")
        if spec.automatic_failover or spec.multi_az:
            raise v.combination("PrimaryClusterId can be changed only when Multi-AZ and automatic failover are "
                                "disabled.")
        if target != rg.status.primary:
            seq = max(spec.primary_change.seq if spec.primary_change else 0, rg.status.primary_change_done) + 1
            spec.primary_change = PrimaryChange(seq=seq, member=target)
            bump = True
    if params.get("SnapshottingClusterId"):
        if params["SnapshottingClusterId"].lower() not in {m.id for m in members}:
            raise ServiceError("CacheClusterNotFoundFault",
                               f"CacheCluster not found: {params['SnapshottingClusterId']}")
        spec.snapshotting_cluster_id = params["SnapshottingClusterId"].lower()
    if params.get("ReplicationGroupDescription") is not None:
        spec.description = params["ReplicationGroupDescription"]
    if params.get("PreferredMaintenanceWindow"):
        spec.maintenance_window = v.maintenance_window(params["PreferredMaintenanceWindow"])
    if params.get("SnapshotWindow"):
        spec.snapshot_window = v.snapshot_window(params["SnapshotWindow"])
    if "SnapshotRetentionLimit" in params:
        if not 0 <= params["SnapshotRetentionLimit"] <= 35:
            raise v.invalid("SnapshotRetentionLimit must be between 0 and 35 days.")
        spec.snapshot_retention_limit = params["SnapshotRetentionLimit"]
    if "NotificationTopicArn" in params:
        spec.notification_topic_arn = params["NotificationTopicArn"] or None
    if "AutoMinorVersionUpgrade" in params:
        spec.auto_minor_version_upgrade = params["AutoMinorVersionUpgrade"]
    if "SecurityGroupIds" in params:
        spec.security_group_ids = list(params["SecurityGroupIds"] or [])
    # Node type and engine version restart every node (replicas first, the primary after a
    # switchover): at once with ApplyImmediately, else in the maintenance window.
    immediate = bool(params.get("ApplyImmediately"))
    pending = spec.pending.model_copy(deep=True)
    if immediate and not pending.empty():  # this request's changes and any pending ones
        spec.node_type = pending.node_type or spec.node_type
        spec.engine_version = pending.engine_version or spec.engine_version
        pending, bump = PendingChanges(), True
    if params.get("CacheNodeType") and params["CacheNodeType"] != spec.node_type:
        node_type = _node_type(params["CacheNodeType"])
        if immediate:
            spec.node_type, pending.node_type, bump = node_type, None, True
        else:
            pending.node_type = node_type
    if params.get("EngineVersion") and params["EngineVersion"] != spec.engine_version:
        version = _engine_version(ctx, spec.engine, params["EngineVersion"])
        if _version_tuple(version) < _version_tuple(spec.engine_version):
            raise v.invalid(f"Cannot downgrade from {spec.engine_version} to {version}.")
        if immediate:
            spec.engine_version, pending.engine_version, bump = version, None, True
        else:
            pending.engine_version = version
    spec.pending = pending if not pending.empty() else PendingChanges()
    for name in ("AuthToken", "UserGroupIdsToAdd", "UserGroupIdsToRemove", "TransitEncryptionEnabled",
                 "CacheParameterGroupName", "ClusterMode"):
        if params.get(name):
            raise v.combination(f"{name} is not supported by elasticache-local yet.")

    def change(r: ReplicationGroup) -> None:
        unchanged_since_read(r, rg)
        r.spec = spec
        if bump:
            r.generation += 1

    updated = store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    sync_members(store, updated)
    ctx.services.enqueue(rg.key)
    return _shape(ctx, updated)


def delete_replication_group(ctx: RequestContext, params: Params) -> Result:
    rg = get_group(ctx, params["ReplicationGroupId"])
    if params.get("FinalSnapshotIdentifier"):
        raise v.combination("FinalSnapshotIdentifier is not supported by elasticache-local yet.")
    if rg.api_status() not in ("available", "create-failed"):
        _require_available(rg)

    def change(r: ReplicationGroup) -> None:
        r.spec.delete_requested = True
        r.spec.retain_primary_cluster = bool(params.get("RetainPrimaryCluster"))
        r.generation += 1

    updated = ctx.services.store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    return _shape(ctx, updated)


def _replica_count_change(ctx: RequestContext, params: Params) -> tuple[ReplicationGroup, list[CacheCluster], int]:
    rg = get_group(ctx, params["ReplicationGroupId"])
    if not params.get("ApplyImmediately"):
        raise v.invalid("ApplyImmediately=false is not supported: replica counts change immediately.")
    _require_available(rg)
    members = members_of(ctx.services.store, rg)
    new_count = params.get("NewReplicaCount")
    shards = params.get("ReplicaConfiguration") or []
    if shards:
        if len(shards) != 1 or shards[0]["NodeGroupId"] != "0001":
            raise ServiceError("NodeGroupNotFoundFault", "The replication group has one node group, 0001.")
        new_count = shards[0]["NewReplicaCount"]
    if new_count is None and not params.get("ReplicasToRemove"):
        raise v.invalid("NewReplicaCount or ReplicaConfiguration must be given.")
    return rg, members, -1 if new_count is None else new_count


def increase_replica_count(ctx: RequestContext, params: Params) -> Result:
    rg, members, new_count = _replica_count_change(ctx, params)
    current = len(members) - 1
    if new_count <= current:
        raise v.invalid(f"NewReplicaCount ({new_count}) must be greater than the current replica count ({current}).")
    if new_count > 5:
        raise v.invalid("A node group can have at most 5 replicas.")
    shards = params.get("ReplicaConfiguration") or []
    azs = list(shards[0].get("PreferredAvailabilityZones") or []) if shards else []
    _check_azs(ctx, azs)
    _add_members(ctx, rg, new_count - current, azs[-(new_count - current):] if azs else [])
    updated = ctx.services.store.update(rg.key, ReplicationGroup, _bump)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    return _shape(ctx, updated)


def decrease_replica_count(ctx: RequestContext, params: Params) -> Result:
    rg, members, new_count = _replica_count_change(ctx, params)
    current = len(members) - 1
    ids = {m.id for m in members}
    to_remove = [r.lower() for r in params.get("ReplicasToRemove") or []]
    for member_id in to_remove:
        if member_id not in ids:
            raise ServiceError("CacheClusterNotFoundFault", f"CacheCluster not found: {member_id}")
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
        to_remove = [m.id for m in reversed(members) if m.id != rg.status.primary][: current - new_count]
    store = ctx.services.store
    for member in members:
        if member.id in to_remove:
            store.update(member.key, CacheCluster, _request_delete)
    updated = store.update(rg.key, ReplicationGroup, _bump)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    return _shape(ctx, updated)


def test_failover(ctx: RequestContext, params: Params) -> Result:
    rg = get_group(ctx, params["ReplicationGroupId"])
    if params["NodeGroupId"] != "0001":
        raise ServiceError("NodeGroupNotFoundFault", f"NodeGroup {params['NodeGroupId']} not found.")
    if rg.status.failover is not None or (rg.spec.test_failover and
                                          rg.spec.test_failover.seq > rg.status.test_failover_done):
        raise ServiceError("InvalidReplicationGroupStateFault",
                           f"A failover of replication group {rg.id} is already in progress.")
    _require_available(rg)
    members = members_of(ctx.services.store, rg)
    busy = [m.id for m in members if m.api_status() != "available"]
    if busy:
        raise ServiceError("InvalidCacheClusterStateFault",
                           f"Cache cluster(s) {', '.join(busy)} of replication group {rg.id} are not available.")
    if not rg.spec.automatic_failover or len(members) < 2:
        raise ServiceError("TestFailoverNotAvailableFault",
                           f"Test failover is not available for replication group {rg.id}: it needs automatic "
                           "failover enabled and at least one replica.")
    now = ctx.services.clock.now()
    recent = [t for t in rg.spec.test_failover_calls if now - t < timedelta(hours=24)]
    if len(recent) >= TEST_FAILOVERS_PER_DAY:
        raise ServiceError("APICallRateForCustomerExceededFault",
                           f"TestFailover can be called for at most {TEST_FAILOVERS_PER_DAY} node groups in a "
                           "rolling 24-hour period.")

    def change(r: ReplicationGroup) -> None:
        seq = max(r.spec.test_failover.seq if r.spec.test_failover else 0, r.status.test_failover_done) + 1
        r.spec.test_failover = FailoverRequest(seq=seq, node_group="0001", requested_at=now)
        r.spec.test_failover_calls = [*recent, now]

    updated = ctx.services.store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    out = _shape(ctx, updated)
    # AWS answers with the group as it was when the request was accepted: available.
    out["ReplicationGroup"]["Status"] = "available"
    return out


def _bump(r: ReplicationGroup) -> None:
    r.generation += 1


def _request_delete(c: CacheCluster) -> None:
    c.spec.delete_requested = True
    c.generation += 1


HANDLERS: dict[str, Handler] = {
    "CreateReplicationGroup": create_replication_group,
    "DescribeReplicationGroups": describe_replication_groups,
    "ModifyReplicationGroup": modify_replication_group,
    "DeleteReplicationGroup": delete_replication_group,
    "IncreaseReplicaCount": increase_replica_count,
    "DecreaseReplicaCount": decrease_replica_count,
    "TestFailover": test_failover,
}
