"""CreateCacheCluster, DescribeCacheClusters, RebootCacheCluster, DeleteCacheCluster (and
ModifyCacheCluster, from cache_cluster_changes): validate, write spec, enqueue, return the shape."""

from __future__ import annotations

from typing import cast

from controlplane import catalog
from controlplane.catalog import version_key
from controlplane.handlers import cache_security_groups, parameter_groups, sasl, security, snapshots, subnet_groups
from controlplane.handlers import defaults as d
from controlplane.handlers import validate as v
from controlplane.handlers.cache_cluster_changes import MAX_MEMCACHED_NODES, check_node_quota, modify_cache_cluster
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import (
    bump_generation,
    cluster_shape,
    described_cluster,
    get_cluster,
    get_group,
    refuse_cluster_mode,
    request_delete,
    require_available,
)
from controlplane.handlers.members import MAX_MEMBERS, member_spec
from controlplane.model import messages as m
from controlplane.model.errors import (
    CacheClusterAlreadyExistsFault,
    InvalidCacheClusterStateFault,
    InvalidReplicationGroupStateFault,
    NodeQuotaForClusterExceededFault,
    SnapshotFeatureNotSupportedFault,
)

# Re-exported: callers catch a handler's refusals as ServiceError.
from controlplane.protocol.errors import ServiceError as ServiceError
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, CacheClusterSpec, RebootRequest

MEMCACHED_TLS_MINIMUM = "1.6.12"  # AWS: in-transit encryption for Memcached from this version on


def create_cache_cluster(ctx: RequestContext, params: m.CreateCacheClusterMessage) -> m.CreateCacheClusterResult:
    cluster_id = v.resource_id(params["CacheClusterId"], "CacheClusterId", 50)
    group_id = params.get("ReplicationGroupId")
    if group_id:
        return _join_replication_group(ctx, cluster_id, group_id, params)
    spec = _new_spec(ctx, cluster_id, params)
    tags = v.tag_records(params.get("Tags", []))
    spec.security.sasl = sasl.on_create(ctx, spec.engine, tags)
    store = ctx.services.store
    key = ctx.key(CacheCluster.KIND, cluster_id)
    if store.get(key, CacheCluster) is not None:
        raise CacheClusterAlreadyExistsFault(f"Cache cluster {cluster_id} already exists.")
    check_node_quota(ctx, spec.num_nodes)
    security.require_transit_supported(ctx, spec.engine, spec.engine_version, spec.security)  # last: the TLS gate
    rec = CacheCluster(account=ctx.account, region=ctx.region, id=cluster_id, created_at=ctx.services.clock.now(),
                       tags=tags, spec=spec)
    if not store.create(rec):
        raise CacheClusterAlreadyExistsFault(f"Cache cluster {cluster_id} already exists.")
    ctx.services.enqueue(key)
    return {"CacheCluster": cluster_shape(rec)}


def _new_spec(ctx: RequestContext, cluster_id: str, params: m.CreateCacheClusterMessage) -> CacheClusterSpec:
    """The spec a CreateCacheCluster asks for, every value checked, defaults filled in."""
    engine = _engine(params.get("Engine"))
    node_type = v.node_type(params.get("CacheNodeType"))
    num_nodes = _num_nodes(engine, params.get("NumCacheNodes", 1))
    version = d.engine_version(ctx, engine, params.get("EngineVersion"))
    port = v.port(params.get("Port") or catalog.DEFAULT_PORTS[engine])
    az_mode, preferred = _azs(ctx, params, engine, num_nodes)
    retention = _snapshots(params, engine)
    snapshot_window: str | None = None
    if engine == "memcached":
        window = d.maintenance_window(ctx, params.get("PreferredMaintenanceWindow"), cluster_id)
    else:
        window, snapshot_window = d.windows_for(ctx, params.get("PreferredMaintenanceWindow"),
                                                params.get("SnapshotWindow"), cluster_id)
    secured = security.on_create(ctx, engine, version, security.Asked(transit=params.get("TransitEncryptionEnabled"),
                                                                      token=params.get("AuthToken")))
    if secured.transit_encryption and engine != "memcached":
        raise v.combination("TransitEncryptionEnabled on CreateCacheCluster is for Memcached clusters: create a "
                            f"{engine} cache with in-transit encryption with CreateReplicationGroup.")
    if secured.transit_encryption and version_key(version) < version_key(MEMCACHED_TLS_MINIMUM):
        raise v.combination(f"In-transit encryption needs Memcached {MEMCACHED_TLS_MINIMUM} or later; this cluster "
                            f"would run {version}.")
    v.ipv4_only(params.get("NetworkType"), params.get("IpDiscovery"))
    parameter_group = parameter_groups.group_for_cache(ctx, engine, version, params.get("CacheParameterGroupName"))
    cache_security_groups.refuse_names(params)
    subnet_group, preferred = _placed(ctx, params.get("CacheSubnetGroupName"), az_mode, preferred, cluster_id)
    restore = snapshots.restore_source(ctx, engine, version, params.get("SnapshotName"),
                                       list(params.get("SnapshotArns", [])))
    snapshots.single_shard(restore)
    return CacheClusterSpec(
        restore=restore,
        engine=engine, engine_version=version, node_type=node_type, num_nodes=num_nodes, port=port,
        az_mode=az_mode, preferred_azs=preferred, parameter_group=parameter_group, subnet_group=subnet_group,
        security_group_ids=list(params.get("SecurityGroupIds", [])),
        maintenance_window=window, snapshot_window=snapshot_window, snapshot_retention_limit=retention,
        notification_topic_arn=params.get("NotificationTopicArn"),
        auto_minor_version_upgrade=params.get("AutoMinorVersionUpgrade", True), security=secured,
    )


def _engine(requested: str | None) -> str:
    engine = (requested or "").lower()
    if not engine:
        raise v.invalid("The parameter Engine must be provided (memcached or redis).")
    if engine == "valkey":
        raise v.invalid("CreateCacheCluster supports the memcached and redis engines; create a Valkey cache "
                        "with CreateReplicationGroup.")
    if engine not in ("redis", "memcached"):
        raise v.invalid(f"Invalid engine: {requested}. Valid values: memcached, redis.")
    return engine


def _num_nodes(engine: str, count: int) -> int:
    # The value given decides the message: AWS's "greater than 1" is for 2 and more only.
    if count < 1:
        raise v.invalid(f"Invalid NumCacheNodes: {count}. The number of cache nodes must be at least 1.")
    if engine == "redis" and count != 1:
        raise v.invalid("Cannot create a Redis cluster with a NumCacheNodes parameter greater than 1.")
    if count > MAX_MEMCACHED_NODES:
        raise NodeQuotaForClusterExceededFault(f"A Memcached cluster can have at most {MAX_MEMCACHED_NODES} nodes.")
    return count


def _azs(ctx: RequestContext, params: m.CreateCacheClusterMessage, engine: str,
         num_nodes: int) -> tuple[str, list[str]]:
    az_mode = params.get("AZMode") or "single-az"
    if az_mode == "cross-az" and engine != "memcached":
        raise v.invalid("The AZMode cross-az is only supported for Memcached clusters.")
    preferred = list(params.get("PreferredAvailabilityZones", []))
    one = params.get("PreferredAvailabilityZone")
    if one:
        if preferred:
            raise v.combination("Only one of PreferredAvailabilityZone and PreferredAvailabilityZones may be given.")
        preferred = [one] * num_nodes
    if preferred and len(preferred) != num_nodes:
        raise v.combination(
            f"The number of PreferredAvailabilityZones ({len(preferred)}) must equal NumCacheNodes ({num_nodes}).")
    v.availability_zones(ctx.region, preferred)
    if az_mode == "single-az" and len(set(preferred)) > 1:
        raise v.combination("AZMode single-az requires every node in the same availability zone.")
    return az_mode, preferred


def _placed(ctx: RequestContext, name: str | None, az_mode: str, preferred: list[str],
            cluster_id: str) -> tuple[str | None, list[str]]:
    """The subnet group (its stored name) and the nodes' zones: those asked, which must be the
    group's; else, in a subnet group, one of its zones (single-az) or all of them in turn (cross-az)."""
    group, zones = subnet_groups.group_zones(ctx, name)
    subnet_groups.within(zones, group, preferred)
    if zones and not preferred:
        # Stable per cluster, as the reconciler's choice without a subnet group.
        preferred = zones if az_mode == "cross-az" else [zones[sum(cluster_id.encode()) % len(zones)]]
    return group, preferred


def _snapshots(params: m.CreateCacheClusterMessage, engine: str) -> int:
    """The retention limit (redis only; the snapshot window is chosen with the maintenance
    window)."""
    retention = params.get("SnapshotRetentionLimit", 0)
    if engine == "memcached":
        if params.get("SnapshotName") or params.get("SnapshotArns") or retention or params.get("SnapshotWindow"):
            raise SnapshotFeatureNotSupportedFault("Snapshots are not supported for Memcached clusters.")
        return retention
    v.retention(retention)
    return retention


def _join_replication_group(ctx: RequestContext, cluster_id: str, group_id: str,
                            params: m.CreateCacheClusterMessage) -> m.CreateCacheClusterResult:
    """CreateCacheCluster with ReplicationGroupId: the new cluster joins as a read replica (as
    Terraform's aws_elasticache_cluster does); it takes the group's engine, version and type."""
    rg = get_group(ctx, group_id)
    refuse_cluster_mode(rg, "Adding a cache cluster (use IncreaseReplicaCount)")
    if rg.api_status() != "available":
        raise InvalidReplicationGroupStateFault(f"Replication group {rg.id} is not in the available state.")
    for name, given, value in (("Engine", params.get("Engine"), rg.spec.engine),
                               ("CacheNodeType", params.get("CacheNodeType"), rg.target().node_type)):
        if given and given.lower() != value:
            raise v.combination(f"{name} {given} does not match the replication group's {value}.")
    store = ctx.services.store
    if len(members_of(store, rg)) >= MAX_MEMBERS:
        raise v.invalid(f"Replication group {rg.id} already has a primary and 5 replicas.")
    az = params.get("PreferredAvailabilityZone")
    if az and az not in catalog.availability_zones(ctx.region):
        raise v.invalid(f"Invalid availability zone: {az}")
    if rg.spec.subnet_group:
        subnet_groups.within(subnet_groups.group_zones(ctx, rg.spec.subnet_group)[1], rg.spec.subnet_group, [az or ""])
        az = az or subnet_groups.member_zones(ctx, rg, 1)[0]
    tags = v.tag_records(params.get("Tags", []))
    sasl.on_create(ctx, rg.spec.engine, tags)  # refuses SASL: a member runs redis or valkey
    rec = CacheCluster(account=ctx.account, region=ctx.region, id=cluster_id, created_at=ctx.services.clock.now(),
                       tags=tags, spec=member_spec(rg, az))
    if not store.create(rec):
        raise CacheClusterAlreadyExistsFault(f"Cache cluster {cluster_id} already exists.")
    store.update(rg.key, type(rg), bump_generation)
    ctx.services.enqueue(rg.key)
    return {"CacheCluster": cluster_shape(rec)}


def describe_cache_clusters(ctx: RequestContext, params: m.DescribeCacheClustersMessage) -> m.CacheClusterMessage:
    show_nodes = bool(params.get("ShowCacheNodeInfo"))
    cluster_id = params.get("CacheClusterId")
    store = ctx.services.store
    if cluster_id:
        records = [get_cluster(ctx, cluster_id)]
    else:
        records = store.records(CacheCluster, ctx.account, ctx.region)
        if params.get("ShowCacheClustersNotInReplicationGroups"):
            records = [r for r in records if not r.spec.replication_group_id]
    return cast(m.CacheClusterMessage,
                v.listing("CacheClusters", records, params, lambda r: described_cluster(ctx, r, show_nodes), store))


def reboot_cache_cluster(ctx: RequestContext, params: m.RebootCacheClusterMessage) -> m.RebootCacheClusterResult:
    rec = get_cluster(ctx, params["CacheClusterId"])
    require_available(rec)
    ids = list(params["CacheNodeIdsToReboot"])
    existing = {n.node_id for n in rec.status.nodes}
    unknown = [n for n in ids if n not in existing]
    if not ids or unknown:
        raise v.invalid(f"Invalid CacheNodeIdsToReboot: {', '.join(unknown) or '(empty)'}")

    def change(r: CacheCluster) -> None:
        seq = max(r.spec.reboot.seq if r.spec.reboot else 0, r.status.rebooted_seq) + 1
        r.spec.reboot = RebootRequest(seq=seq, node_ids=sorted(set(ids)))

    updated = ctx.services.store.update(rec.key, CacheCluster, change)
    assert updated is not None
    ctx.services.enqueue(rec.key)
    return {"CacheCluster": cluster_shape(updated)}


def delete_cache_cluster(ctx: RequestContext, params: m.DeleteCacheClusterMessage) -> m.DeleteCacheClusterResult:
    rec = get_cluster(ctx, params["CacheClusterId"])
    final = params.get("FinalSnapshotIdentifier")
    if final and rec.spec.engine == "memcached":
        raise SnapshotFeatureNotSupportedFault("Snapshots are not supported for Memcached clusters.")
    if rec.api_status() not in ("incompatible-network", "restore-failed"):  # failed ones can go
        require_available(rec)
    if rec.spec.replication_group_id:
        if final:
            raise v.combination(f"Cache cluster {rec.id} is a member of replication group "
                                f"{rec.spec.replication_group_id}: take a final snapshot of the group instead.")
        _check_member_may_go(ctx, rec, rec.spec.replication_group_id)
    if final:
        snapshots.final_snapshot(ctx, final, cluster_id=rec.id)

    def change(r: CacheCluster) -> None:
        request_delete(r)
        r.spec.final_snapshot = final

    updated = ctx.services.store.update(rec.key, CacheCluster, change)
    assert updated is not None
    ctx.services.enqueue(rec.key)
    return {"CacheCluster": cluster_shape(updated)}


def _check_member_may_go(ctx: RequestContext, rec: CacheCluster, group_id: str) -> None:
    """A member of a replication group may be deleted unless the group needs it."""
    rg = get_group(ctx, group_id)
    if rg.status.failover is not None:
        raise InvalidReplicationGroupStateFault(f"Replication group {rg.id} is failing over; delete {rec.id} "
                                                "afterwards.")
    if rg.status.primary == rec.id:
        raise InvalidCacheClusterStateFault(f"Cache cluster {rec.id} is the primary of replication group {rg.id} and "
                                            "cannot be deleted; delete the replication group or fail over first.")
    if rg.spec.automatic_failover and len(members_of(ctx.services.store, rg)) <= 2:
        raise InvalidReplicationGroupStateFault(f"Cache cluster {rec.id} is the last replica of replication group "
                                                f"{rg.id}, which has automatic failover enabled.")


HANDLERS: HandlerTable = {
    "CreateCacheCluster": create_cache_cluster,
    "DescribeCacheClusters": describe_cache_clusters,
    "ModifyCacheCluster": modify_cache_cluster,
    "RebootCacheCluster": reboot_cache_cluster,
    "DeleteCacheCluster": delete_cache_cluster,
}
