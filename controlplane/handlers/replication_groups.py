"""Replication groups, cluster mode disabled: Create, Describe, Modify, Delete. Members are cache
clusters `<rg>-001`, ... (members.py); replica counts and TestFailover are in replicas.py."""

from __future__ import annotations

from typing import cast

from controlplane import catalog
from controlplane.handlers import (
    cache_security_groups,
    cluster_mode,
    cluster_security,
    global_datastores,
    node_types,
    parameter_groups,
    sasl,
    security,
    snapshots,
    subnet_groups,
)
from controlplane.handlers import defaults as d
from controlplane.handlers import validate as v
from controlplane.handlers.changes import NodeChanges, shared_settings, spec_to_change
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import (
    get_group,
    group_shape,
    refuse_cluster_mode,
    require_available,
    unchanged_since_read,
)
from controlplane.handlers.members import MAX_MEMBERS, MAX_REPLICAS, add_members, sync_members
from controlplane.handlers.replicas import decrease_replica_count, increase_replica_count, test_failover
from controlplane.model import messages as m
from controlplane.model.errors import (
    CacheClusterNotFoundFault,
    InvalidCacheClusterStateFault,
    InvalidReplicationGroupStateFault,
    ReplicationGroupAlreadyExistsFault,
)
from controlplane.state.global_datastores import of_group
from controlplane.state.members import members_of
from controlplane.state.records import (
    CacheCluster,
    PrimaryChange,
    ReplicationGroup,
    ReplicationGroupSpec,
    RestoreSource,
)
from controlplane.state.users import UserGroup

_AUTOMATIC_FAILOVER_NEEDS_TWO = ("When using automatic failover, there must be at least 2 cache clusters in the "
                                 "replication group.")


# What a group with cluster mode enabled cannot change yet (node type and engine version roll shard
# by shard: reconciler/replication_groups/cluster_shards.py).
# CacheNodeType and EngineVersion: the shard-by-shard roll (reconciler cluster_shards.py) passes on
# the fake runtime but never completes on real nodes since the merges of this stop; refused until
# it does.
_NODE_CHANGES = ("CacheNodeType", "EngineVersion", "AutomaticFailoverEnabled", "MultiAZEnabled", "PrimaryClusterId",
                 "TransitEncryptionEnabled", "TransitEncryptionMode", "AuthToken", "UserGroupIdsToAdd",
                 "UserGroupIdsToRemove", "RemoveUserGroups", "SnapshottingClusterId")


def create_replication_group(ctx: RequestContext,
                             params: m.CreateReplicationGroupMessage) -> m.CreateReplicationGroupResult:
    group_id = v.resource_id(params["ReplicationGroupId"], "ReplicationGroupId", 40)
    store = ctx.services.store
    if store.get(ctx.key(ReplicationGroup.KIND, group_id), ReplicationGroup) is not None:
        raise ReplicationGroupAlreadyExistsFault(f"Replication group {group_id} already exists.")
    shards = cluster_mode.layout(ctx, params)  # None: cluster mode disabled
    _refuse_unsupported(params, cluster=shards is not None)
    primary = _primary(ctx, params.get("PrimaryClusterId"))
    global_id = (params.get("GlobalReplicationGroupId") or "").lower() or None
    if global_id and shards is not None:
        raise v.combination("Global datastores of cluster-mode-enabled replication groups are not supported by "
                            "elasticache-local yet.")
    inherited = global_datastores.secondary_settings(ctx, global_id, params) if global_id else None
    spec, total, azs = _new_spec(ctx, group_id, cluster_mode.common_params(params) if shards else params, primary,
                                 inherited)
    if shards is not None:
        spec = cluster_mode.apply(ctx, spec, shards)
    else:
        snapshots.single_shard(spec.restore)
    spec.global_group = global_id
    if inherited is not None:
        spec.security = inherited.security
    tags = v.tag_records(params.get("Tags", []))
    sasl.on_create(ctx, spec.engine, tags)  # refuses SASL: memcached SASL is for Memcached clusters
    security.require_transit_supported(ctx, spec.engine, spec.engine_version, spec.security)  # last: the TLS gate
    rg = ReplicationGroup(account=ctx.account, region=ctx.region, id=group_id, created_at=ctx.services.clock.now(),
                          tags=tags, spec=spec)
    if not store.create(rg):
        raise ReplicationGroupAlreadyExistsFault(f"Replication group {group_id} already exists.")
    if global_id:
        global_datastores.joined(ctx, global_id, rg)
    if shards is not None:
        cluster_mode.add_shard_members(ctx, rg)
    elif primary is not None:
        def join(c: CacheCluster) -> None:
            c.spec.replication_group_id = group_id
        store.update(primary.key, CacheCluster, join)
        add_members(ctx, rg, total - 1, azs[1:])
    else:
        add_members(ctx, rg, total, azs)
    ctx.services.enqueue(rg.key)
    return {"ReplicationGroup": group_shape(ctx, rg)}


def _refuse_unsupported(params: m.CreateReplicationGroupMessage, cluster: bool) -> None:
    if not cluster and params.get("NumNodeGroups") is not None and params["NumNodeGroups"] != 1:
        raise v.invalid("NumNodeGroups must be at least 1.")
    given = {"ServerlessCacheSnapshotName": params.get("ServerlessCacheSnapshotName"),
             "AtRestEncryptionEnabled": params.get("AtRestEncryptionEnabled")}
    for name, value in given.items():
        if value:
            raise v.unsupported(name)


def _primary(ctx: RequestContext, cluster_id: str | None) -> CacheCluster | None:
    """PrimaryClusterId: an available redis cluster of no group, which becomes the group's primary."""
    if not cluster_id:
        return None
    primary = ctx.services.store.get(ctx.key(CacheCluster.KIND, cluster_id.lower()), CacheCluster)
    if primary is None:
        raise CacheClusterNotFoundFault(f"CacheCluster not found: {cluster_id}")
    if primary.spec.engine != "redis" or primary.spec.replication_group_id:
        raise InvalidCacheClusterStateFault(f"Cache cluster {primary.id} cannot be the primary of a replication group.")
    if primary.api_status() != "available":
        raise InvalidCacheClusterStateFault(f"Cache cluster {primary.id} is not available.")
    return primary


def _new_spec(ctx: RequestContext, group_id: str, params: m.CreateReplicationGroupMessage,
              primary: CacheCluster | None,
              inherited: global_datastores.Inherited | None = None) -> tuple[ReplicationGroupSpec, int, list[str]]:
    """The group's spec, how many members it starts with, and their AZs (where asked).
    `inherited`: what a global datastore's secondary takes from its primary."""
    engine, node_type, version = _engine(ctx, params, primary) if inherited is None else (
        inherited.engine, inherited.node_type, inherited.version)
    node_group = (params.get("NodeGroupConfiguration") or [{}])[0]
    total, automatic, multi_az = _members(params, node_group)
    azs = _member_azs(ctx, params, node_group, total)
    cache_security_groups.refuse_names(params)
    subnet_group, zones = subnet_groups.group_zones(ctx, params.get("CacheSubnetGroupName"))
    subnet_groups.within(zones, subnet_group, azs)
    if zones and not azs:
        # Spread over the group's zones, as AWS places a Multi-AZ group's nodes (the primary
        # keeps its own zone when there is one: PrimaryClusterId).
        taken = [n.az for n in primary.status.nodes] if primary else []
        azs = (taken[:1] + subnet_groups.spread(zones, taken, total - 1)) if taken else subnet_groups.spread(
            zones, [], total)
    port = v.port(params.get("Port") or (primary.spec.port if primary else catalog.DEFAULT_PORTS[engine]))
    parameter_group = parameter_groups.group_for_cache(ctx, engine, version, params.get("CacheParameterGroupName"))
    window, snapshot_window = d.windows_for(ctx, params.get("PreferredMaintenanceWindow"),
                                            params.get("SnapshotWindow"), group_id)
    retention = v.retention(params.get("SnapshotRetentionLimit", 0))
    v.ipv4_only(params.get("NetworkType"), params.get("IpDiscovery"))
    spec = ReplicationGroupSpec(
        description=params["ReplicationGroupDescription"], engine=engine, engine_version=version,
        node_type=node_type, port=port, parameter_group=parameter_group, maintenance_window=window,
        snapshot_window=snapshot_window, snapshot_retention_limit=retention,
        notification_topic_arn=params.get("NotificationTopicArn"),
        auto_minor_version_upgrade=params.get("AutoMinorVersionUpgrade", True),
        security_group_ids=list(params.get("SecurityGroupIds", [])),
        subnet_group=subnet_group,
        automatic_failover=automatic, multi_az=multi_az, initial_primary=primary.id if primary else None,
        restore=_restore(ctx, params, engine, version, primary),
        security=security.on_create(ctx, engine, version, security.Asked(
            transit=params.get("TransitEncryptionEnabled"), mode=params.get("TransitEncryptionMode"),
            token=params.get("AuthToken"), add=list(params.get("UserGroupIds", [])))),
    )
    return spec, total, azs


def _restore(ctx: RequestContext, params: m.CreateReplicationGroupMessage, engine: str, version: str,
             primary: CacheCluster | None) -> RestoreSource | None:
    restore = snapshots.restore_source(ctx, engine, version, params.get("SnapshotName"),
                                       list(params.get("SnapshotArns", [])))
    if restore is not None and primary is not None:
        raise v.combination("PrimaryClusterId and SnapshotName/SnapshotArns cannot be given together: the primary "
                            "already holds its data.")
    return restore


def _engine(ctx: RequestContext, params: m.CreateReplicationGroupMessage,
            primary: CacheCluster | None) -> tuple[str, str, str]:
    """Engine, node type and version: as asked, else the primary's, else the defaults."""
    engine = (params.get("Engine") or (primary.spec.engine if primary else "redis")).lower()
    if engine not in ("redis", "valkey"):
        raise v.invalid(f"Invalid engine: {params.get('Engine')}. Replication groups run redis or valkey.")
    if engine not in ctx.services.available_versions():
        raise v.invalid(f"No {engine} server is installed on this machine (install valkey-server for Valkey).")
    node_type = params.get("CacheNodeType")
    node_type = primary.target().node_type if primary and not node_type else v.node_type(node_type)
    version = params.get("EngineVersion")
    version = primary.target().engine_version if primary and not version else d.engine_version(ctx, engine, version)
    return engine, node_type, version


def _members(params: m.CreateReplicationGroupMessage, node_group: m.NodeGroupConfiguration) -> tuple[int, bool, bool]:
    """How many members (NumCacheClusters, or 1 + ReplicasPerNodeGroup / the node group's
    ReplicaCount), and whether automatic failover and Multi-AZ are on."""
    replicas = params.get("ReplicasPerNodeGroup", node_group.get("ReplicaCount"))
    if params.get("NumCacheClusters") is not None and replicas is not None:
        raise v.combination("Specify either NumCacheClusters or ReplicasPerNodeGroup, not both.")
    if replicas is not None:
        if not 0 <= replicas <= MAX_REPLICAS:
            raise v.invalid(f"ReplicasPerNodeGroup must be between 0 and {MAX_REPLICAS}.")
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
        raise v.combination(_AUTOMATIC_FAILOVER_NEEDS_TWO)
    if multi_az and not automatic:
        raise v.combination("Multi-AZ requires automatic failover to be enabled.")
    return total, automatic, multi_az


def _member_azs(ctx: RequestContext, params: m.CreateReplicationGroupMessage, node_group: m.NodeGroupConfiguration,
                total: int) -> list[str]:
    azs = list(params.get("PreferredCacheClusterAZs", []))
    if node_group.get("PrimaryAvailabilityZone") or node_group.get("ReplicaAvailabilityZones"):
        azs = [node_group.get("PrimaryAvailabilityZone") or "", *node_group.get("ReplicaAvailabilityZones", [])]
        azs = [a for a in azs if a] if all(azs) else azs
    if azs and len(azs) != total:
        raise v.combination(f"The number of availability zones ({len(azs)}) must equal the number of cache "
                            f"clusters ({total}).")
    v.availability_zones(ctx.region, [a for a in azs if a])
    return azs


def describe_replication_groups(ctx: RequestContext,
                                params: m.DescribeReplicationGroupsMessage) -> m.ReplicationGroupMessage:
    store = ctx.services.store
    group_id = params.get("ReplicationGroupId")
    groups = [get_group(ctx, group_id)] if group_id else store.records(ReplicationGroup, ctx.account, ctx.region)
    return cast(m.ReplicationGroupMessage,
                v.listing("ReplicationGroups", groups, params, lambda g: group_shape(ctx, g), store))


def modify_replication_group(ctx: RequestContext,
                             params: m.ModifyReplicationGroupMessage) -> m.ModifyReplicationGroupResult:
    rg = get_group(ctx, params["ReplicationGroupId"])
    require_available(rg)
    for name in _NODE_CHANGES:
        if params.get(name) is not None and not cluster_security.handled(rg, name):
            refuse_cluster_mode(rg, f"ModifyReplicationGroup {name}")
    cluster_security.on_modify(rg, _security_asked(params))
    store = ctx.services.store
    members = members_of(store, rg)
    spec = spec_to_change(rg)
    cache_security_groups.refuse_names(params)
    bump = _failover_settings(rg, spec, params, {c.id for c in members})
    _settings(spec, params)
    # A group's immediate values apply now, the others at the next reboot.
    spec.parameter_group = parameter_groups.group_on_modify(
        ctx, spec.engine, spec.parameter_group, rg.target().engine_version,
        params.get("EngineVersion") or rg.target().engine_version,
        params.get("CacheParameterGroupName"), cluster_mode=rg.cluster_enabled) or spec.parameter_group
    # Node type and engine version restart every node (replicas first, the primary after a
    # switchover): at once with ApplyImmediately, else in the maintenance window.
    nodes = NodeChanges.start(spec, bool(params.get("ApplyImmediately")))
    node_type = params.get("CacheNodeType")
    if node_type and node_type != spec.node_type:
        nodes.node_type(node_types.modification(spec.node_type, v.node_type(node_type)))
    version = d.version_change(ctx, spec.engine, spec.engine_version, params.get("EngineVersion"))
    if version:
        nodes.engine_version(version)
    nodes.finish()
    _refuse_unsupported_changes(params)
    secured = security.on_modify(ctx, rg, _security_asked(params))
    if secured is not None and of_group(store, rg) is not None:
        raise v.combination(f"Replication group {rg.id} is a member of global replication group "
                            f"{rg.spec.global_group}: changing its in-transit encryption, AUTH token or user groups "
                            "is not supported by elasticache-local yet.")
    if secured is not None:
        if rg.cluster_enabled:
            cluster_security.refuse_iam(ctx, secured.user_group_ids)
        spec.security = secured
        security.require_transit_supported(ctx, spec.engine, rg.target().engine_version, secured)  # last: the gate

    def change(r: ReplicationGroup) -> None:
        unchanged_since_read(r, rg)
        r.spec = spec
        if bump or nodes.restart or secured is not None:
            r.generation += 1

    updated = store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    sync_members(store, updated)
    ctx.services.enqueue(rg.key)
    for group_id in {*rg.spec.security.user_group_ids, *spec.security.user_group_ids}:
        ctx.services.enqueue(ctx.key(UserGroup.KIND, group_id))  # they read "modifying" until the nodes have it
    return {"ReplicationGroup": group_shape(ctx, updated)}


def _security_asked(params: m.ModifyReplicationGroupMessage) -> security.Asked:
    return security.Asked(transit=params.get("TransitEncryptionEnabled"), mode=params.get("TransitEncryptionMode"),
                          token=params.get("AuthToken"), strategy=params.get("AuthTokenUpdateStrategy"),
                          add=list(params.get("UserGroupIdsToAdd", [])),
                          remove=list(params.get("UserGroupIdsToRemove", [])),
                          remove_all=bool(params.get("RemoveUserGroups")))


def _failover_settings(rg: ReplicationGroup, spec: ReplicationGroupSpec, params: m.ModifyReplicationGroupMessage,
                       members: set[str]) -> bool:
    """Automatic failover, Multi-AZ and the primary; whether the nodes change (the generation goes up)."""
    bump = False
    if "AutomaticFailoverEnabled" in params:
        spec.automatic_failover = bool(params["AutomaticFailoverEnabled"])
        if spec.automatic_failover and len(members) < 2:
            raise v.combination(_AUTOMATIC_FAILOVER_NEEDS_TWO)
        bump = spec.automatic_failover != rg.spec.automatic_failover
    if "MultiAZEnabled" in params:
        spec.multi_az = bool(params["MultiAZEnabled"])
    if spec.multi_az and not spec.automatic_failover:
        raise v.combination("Multi-AZ requires automatic failover to be enabled.")
    primary = params.get("PrimaryClusterId")
    if primary:
        target = primary.lower()
        if target not in members:
            raise CacheClusterNotFoundFault(f"CacheCluster not found: {primary}")
        if spec.automatic_failover or spec.multi_az:
            raise v.combination("PrimaryClusterId can be changed only when Multi-AZ and automatic failover are "
                                "disabled.")
        if target != rg.status.primary:
            seq = max(spec.primary_change.seq if spec.primary_change else 0, rg.status.primary_change_done) + 1
            spec.primary_change = PrimaryChange(seq=seq, member=target)
            bump = True
    snapshotting = params.get("SnapshottingClusterId")
    if snapshotting:
        if snapshotting.lower() not in members:
            raise CacheClusterNotFoundFault(f"CacheCluster not found: {snapshotting}")
        spec.snapshotting_cluster_id = snapshotting.lower()
    return bump


def _settings(spec: ReplicationGroupSpec, params: m.ModifyReplicationGroupMessage) -> None:
    """The changes that need no node to restart."""
    if params.get("ReplicationGroupDescription") is not None:
        spec.description = params["ReplicationGroupDescription"]
    shared_settings(spec, params)
    snapshot_window = params.get("SnapshotWindow")
    if snapshot_window:
        spec.snapshot_window = v.snapshot_window(snapshot_window)
    if snapshot_window or params.get("PreferredMaintenanceWindow"):
        v.no_overlap(spec.maintenance_window, spec.snapshot_window)
    if "SnapshotRetentionLimit" in params:
        spec.snapshot_retention_limit = v.retention(params["SnapshotRetentionLimit"])


def _refuse_unsupported_changes(params: m.ModifyReplicationGroupMessage) -> None:
    given = {"ClusterMode": params.get("ClusterMode")}
    for name, value in given.items():
        if value:
            raise v.unsupported(name)


def delete_replication_group(ctx: RequestContext,
                             params: m.DeleteReplicationGroupMessage) -> m.DeleteReplicationGroupResult:
    rg = get_group(ctx, params["ReplicationGroupId"])
    if rg.api_status() not in ("available", "create-failed"):
        require_available(rg)
    if of_group(ctx.services.store, rg) is not None:
        raise InvalidReplicationGroupStateFault(
            f"Replication group {rg.id} is a member of global replication group {rg.spec.global_group}: disassociate "
            "it (or delete the global replication group) first.")
    retain = bool(params.get("RetainPrimaryCluster"))
    final = params.get("FinalSnapshotIdentifier")
    if retain:
        refuse_cluster_mode(rg, "RetainPrimaryCluster")
    if final:
        snapshots.final_snapshot(ctx, final, group_id=rg.id)

    def change(r: ReplicationGroup) -> None:
        r.spec.delete_requested = True
        r.spec.retain_primary_cluster = retain
        r.spec.final_snapshot = final
        r.generation += 1

    updated = ctx.services.store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    return {"ReplicationGroup": group_shape(ctx, updated)}


HANDLERS: HandlerTable = {
    "CreateReplicationGroup": create_replication_group,
    "DescribeReplicationGroups": describe_replication_groups,
    "ModifyReplicationGroup": modify_replication_group,
    "DeleteReplicationGroup": delete_replication_group,
    "IncreaseReplicaCount": increase_replica_count,
    "DecreaseReplicaCount": decrease_replica_count,
    "TestFailover": test_failover,
}
