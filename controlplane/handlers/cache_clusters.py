"""CreateCacheCluster, DescribeCacheClusters, ModifyCacheCluster, RebootCacheCluster,
DeleteCacheCluster: validate, write spec, enqueue, return the shape."""

from __future__ import annotations

import zlib
from functools import partial
from typing import Any

from controlplane import catalog
from controlplane.catalog import resolve_version
from controlplane.handlers import validate as v
from controlplane.handlers.context import Handler, Params, RequestContext, Result
from controlplane.protocol.errors import ServiceError
from controlplane.state import shapes
from controlplane.state.records import (
    CacheCluster,
    CacheClusterSpec,
    PendingChanges,
    RebootRequest,
    Tag,
)

MAX_MEMCACHED_NODES = 40  # AWS's default per-cluster quota
MAX_NODES_PER_REGION = 300  # AWS's default per-account, per-region quota
MAX_TAGS = 50


def _get(ctx: RequestContext, cluster_id: str) -> CacheCluster:
    rec = ctx.services.store.get(ctx.key(CacheCluster.KIND, cluster_id.lower()), CacheCluster)
    if rec is None:
        raise ServiceError("CacheClusterNotFoundFault", f"CacheCluster not found: {cluster_id}")
    return rec


def _require_available(rec: CacheCluster) -> None:
    if rec.api_status() != "available":
        raise ServiceError(
            "InvalidCacheClusterStateFault",
            f"Cache cluster {rec.id} is not in the available state (it is {rec.api_status()}).",
        )


def _default_window(cluster_id: str, region: str) -> str:
    """A stable pseudo-random hour in the region's 8-hour block, as AWS picks one."""
    h = zlib.crc32(cluster_id.encode())
    day = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")[h % 7]
    start = catalog.MAINTENANCE_BLOCK_START_HOUR.get(region, 3) + (h >> 3) % 8
    end_day = day
    if start >= 23:
        start %= 24
        if start == 23:
            end_day = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")[(h + 1) % 7]
    end = (start + 1) % 24
    return f"{day}:{start:02d}:00-{end_day}:{end:02d}:00"


def _default_snapshot_window(cluster_id: str) -> str:
    start = (zlib.crc32(cluster_id.encode()) >> 5) % 24
    return f"{start:02d}:00-{(start + 1) % 24:02d}:00"


def _node_type(value: str | None) -> str:
    if not value:
        raise v.invalid("The parameter CacheNodeType must be provided and must not be null.")
    if value not in catalog.NODE_TYPES:
        raise v.invalid(f"Invalid CacheNodeType: {value}")
    return value


def _engine_version(ctx: RequestContext, engine: str, requested: str | None) -> str:
    version = requested or catalog.DEFAULT_VERSIONS[engine]
    if catalog.known_version(engine, version) is None:
        raise v.combination(f"Cannot find version {version} for {engine}")
    if ctx.services.settings.strict_engine_versions:
        available = ctx.services.available_versions()
        chosen, exact = resolve_version(engine, version, available, strict=True)
        if chosen is None or not exact:
            have = ", ".join(available.get(engine, ())) or "none"
            raise v.invalid(
                f"{engine} {version} cannot run on this machine (installed: {have}). Install it, "
                "or unset ELASTICACHE_LOCAL_STRICT_ENGINE_VERSIONS to run the nearest installed version."
            )
    return version


def _tags(params: Params) -> list[Tag]:
    items = params.get("Tags") or []
    if len(items) > MAX_TAGS:
        raise ServiceError("TagQuotaPerResourceExceeded", f"A resource can have at most {MAX_TAGS} tags.")
    out: dict[str, Tag] = {}
    for item in items:
        key = item.get("Key")
        if not key:
            raise v.invalid("Tag keys must not be empty.")
        out[key] = Tag(key=key, value=item.get("Value") or "")
    return list(out.values())


def _azs(ctx: RequestContext, params: Params, engine: str, num_nodes: int) -> tuple[str, list[str]]:
    zones = catalog.availability_zones(ctx.region)
    az_mode = params.get("AZMode") or "single-az"
    if az_mode == "cross-az" and engine != "memcached":
        raise v.invalid("The AZMode cross-az is only supported for Memcached clusters.")
    preferred: list[str] = list(params.get("PreferredAvailabilityZones") or [])
    if params.get("PreferredAvailabilityZone"):
        if preferred:
            raise v.combination(
                "Only one of PreferredAvailabilityZone and PreferredAvailabilityZones may be given."
            )
        preferred = [params["PreferredAvailabilityZone"]] * num_nodes
    if preferred and len(preferred) != num_nodes:
        raise v.combination(
            f"The number of PreferredAvailabilityZones ({len(preferred)}) must equal NumCacheNodes ({num_nodes})."
        )
    for az in preferred:
        if az not in zones:
            raise v.invalid(f"Invalid availability zone: {az}. Valid zones in {ctx.region}: {', '.join(zones)}.")
    if az_mode == "single-az" and len(set(preferred)) > 1:
        raise v.combination("AZMode single-az requires every node in the same availability zone.")
    return az_mode, preferred


def _check_quota(ctx: RequestContext, adding: int) -> None:
    used = sum(
        max(r.spec.num_nodes, len(r.status.nodes))
        for r in ctx.services.store.records(CacheCluster, ctx.account, ctx.region)
    )
    if used + adding > MAX_NODES_PER_REGION:
        raise ServiceError(
            "NodeQuotaForCustomerExceededFault",
            f"This request would exceed the {MAX_NODES_PER_REGION} cache nodes allowed per region.",
        )


def create_cache_cluster(ctx: RequestContext, params: Params) -> Result:
    cluster_id = v.resource_id(params["CacheClusterId"], "CacheClusterId", 50)
    if params.get("ReplicationGroupId"):
        return _join_replication_group(ctx, cluster_id, params)
    engine = (params.get("Engine") or "").lower()
    if not engine:
        raise v.invalid("The parameter Engine must be provided (memcached or redis).")
    if engine == "valkey":
        raise v.invalid(
            "CreateCacheCluster supports the memcached and redis engines; create a Valkey cache "
            "with CreateReplicationGroup."
        )
    if engine not in ("redis", "memcached"):
        raise v.invalid(f"Invalid engine: {params.get('Engine')}. Valid values: memcached, redis.")
    node_type = _node_type(params.get("CacheNodeType"))
    num_nodes = params.get("NumCacheNodes", 1)
    if engine == "redis" and num_nodes != 1:
        raise v.invalid("Cannot create a Redis cluster with a NumCacheNodes parameter greater than 1.")
    if num_nodes < 1:
        raise v.invalid("NumCacheNodes must be at least 1.")
    if num_nodes > MAX_MEMCACHED_NODES:
        raise ServiceError(
            "NodeQuotaForClusterExceededFault",
            f"A Memcached cluster can have at most {MAX_MEMCACHED_NODES} nodes.",
        )
    version = _engine_version(ctx, engine, params.get("EngineVersion"))
    port = params.get("Port") or catalog.DEFAULT_PORTS[engine]
    if not 1 <= port <= 65535:
        raise v.invalid(f"Invalid port: {port}")
    az_mode, preferred = _azs(ctx, params, engine, num_nodes)
    window = v.maintenance_window(params["PreferredMaintenanceWindow"]) if params.get(
        "PreferredMaintenanceWindow") else _default_window(cluster_id, ctx.region)
    retention = params.get("SnapshotRetentionLimit", 0)
    snapshot_window = None
    if engine == "memcached":
        if params.get("SnapshotName") or params.get("SnapshotArns") or retention or params.get("SnapshotWindow"):
            raise ServiceError("SnapshotFeatureNotSupportedFault",
                               "Snapshots are not supported for Memcached clusters.")
    else:
        if not 0 <= retention <= 35:
            raise v.invalid("SnapshotRetentionLimit must be between 0 and 35 days.")
        snapshot_window = (v.snapshot_window(params["SnapshotWindow"]) if params.get("SnapshotWindow")
                           else _default_snapshot_window(cluster_id))
        if params.get("PreferredMaintenanceWindow") and params.get("SnapshotWindow") and v.windows_overlap(
                window, snapshot_window):
            raise v.combination("The snapshot window and the maintenance window must not overlap.")
        if params.get("SnapshotName"):
            raise ServiceError("SnapshotNotFoundFault", f"Snapshot {params['SnapshotName']} not found.")
        if params.get("SnapshotArns"):
            raise v.combination("Restoring from SnapshotArns is not supported by elasticache-local yet.")
    if params.get("AuthToken") and not params.get("TransitEncryptionEnabled"):
        raise v.combination("AuthToken requires TransitEncryptionEnabled to be true.")
    if params.get("TransitEncryptionEnabled"):
        raise v.combination("TransitEncryptionEnabled (TLS) is not supported by elasticache-local yet.")
    network_type = params.get("NetworkType") or "ipv4"
    if network_type != "ipv4" or (params.get("IpDiscovery") or "ipv4") != "ipv4":
        raise v.invalid("Only the ipv4 network type is supported by elasticache-local (nodes use loopback "
                        "IPv4 addresses).")
    family = catalog.family_of(engine, version)
    parameter_group = params.get("CacheParameterGroupName") or f"default.{family}"
    if parameter_group != f"default.{family}":
        raise ServiceError("CacheParameterGroupNotFoundFault",
                           f"CacheParameterGroup {parameter_group} not found.")
    if params.get("CacheSubnetGroupName"):
        raise ServiceError("CacheSubnetGroupNotFoundFault",
                           f"CacheSubnetGroup {params['CacheSubnetGroupName']} not found.")
    tags = _tags(params)

    store = ctx.services.store
    key = ctx.key(CacheCluster.KIND, cluster_id)
    if store.get(key, CacheCluster) is not None:
        raise ServiceError("CacheClusterAlreadyExistsFault", f"Cache cluster {cluster_id} already exists.")
    _check_quota(ctx, num_nodes)
    rec = CacheCluster(
        account=ctx.account,
        region=ctx.region,
        id=cluster_id,
        created_at=ctx.services.clock.now(),
        tags=tags,
        spec=CacheClusterSpec(
            engine=engine,
            engine_version=version,
            node_type=node_type,
            num_nodes=num_nodes,
            port=port,
            az_mode=az_mode,
            preferred_azs=preferred,
            parameter_group=parameter_group,
            security_group_names=list(params.get("CacheSecurityGroupNames") or []),
            security_group_ids=list(params.get("SecurityGroupIds") or []),
            maintenance_window=window,
            snapshot_window=snapshot_window,
            snapshot_retention_limit=retention,
            notification_topic_arn=params.get("NotificationTopicArn"),
            auto_minor_version_upgrade=params.get("AutoMinorVersionUpgrade", True),
        ),
    )
    if not store.create(rec):
        raise ServiceError("CacheClusterAlreadyExistsFault", f"Cache cluster {cluster_id} already exists.")
    ctx.services.enqueue(key)
    return {"CacheCluster": shapes.cache_cluster(rec, show_nodes=False)}


def _join_replication_group(ctx: RequestContext, cluster_id: str, params: Params) -> Result:
    """CreateCacheCluster with ReplicationGroupId: the new cluster joins as a read replica (as
    Terraform's aws_elasticache_cluster does); it takes the group's engine, version and type."""
    from controlplane.handlers.replication_groups import MAX_MEMBERS, get_group, member_spec
    from controlplane.state.members import members_of

    rg = get_group(ctx, params["ReplicationGroupId"])
    if rg.api_status() != "available":
        raise ServiceError("InvalidReplicationGroupStateFault",
                           f"Replication group {rg.id} is not in the available state.")
    for name, value in (("Engine", rg.spec.engine), ("CacheNodeType", rg.spec.node_type)):
        if params.get(name) and params[name].lower() != value:
            raise v.combination(f"{name} {params[name]} does not match the replication group's {value}.")
    store = ctx.services.store
    if len(members_of(store, rg)) >= MAX_MEMBERS:
        raise v.invalid(f"Replication group {rg.id} already has a primary and 5 replicas.")
    az = params.get("PreferredAvailabilityZone")
    if az and az not in catalog.availability_zones(ctx.region):
        raise v.invalid(f"Invalid availability zone: {az}")
    rec = CacheCluster(account=ctx.account, region=ctx.region, id=cluster_id, created_at=ctx.services.clock.now(),
                       tags=_tags(params), spec=member_spec(rg, az))
    if not store.create(rec):
        raise ServiceError("CacheClusterAlreadyExistsFault", f"Cache cluster {cluster_id} already exists.")
    store.update(rg.key, type(rg), _bump_generation)
    ctx.services.enqueue(rg.key)
    return {"CacheCluster": shapes.cache_cluster(rec, show_nodes=False)}


def _bump_generation(rec: Any) -> None:
    rec.generation += 1


def describe_cache_clusters(ctx: RequestContext, params: Params) -> Result:
    show_nodes = bool(params.get("ShowCacheNodeInfo"))
    if params.get("CacheClusterId"):
        records = [_get(ctx, params["CacheClusterId"])]
    else:
        records = ctx.services.store.records(CacheCluster, ctx.account, ctx.region)
        if params.get("ShowCacheClustersNotInReplicationGroups"):
            records = [r for r in records if not r.spec.replication_group_id]
    store = ctx.services.store
    chunk, marker = v.page(records, params, key=lambda r: store.seq(r.key))
    services = ctx.services
    out: Result = {"CacheClusters": [
        services.cached_shape(r, show_nodes, partial(shapes.cache_cluster, r, show_nodes)) for r in chunk]}
    if marker:
        out["Marker"] = marker
    return out


def modify_cache_cluster(ctx: RequestContext, params: Params) -> Result:
    rec = _get(ctx, params["CacheClusterId"])
    _require_available(rec)
    if rec.spec.replication_group_id:
        for name in ("NumCacheNodes", "CacheNodeType", "EngineVersion", "CacheNodeIdsToRemove"):
            if params.get(name) is not None:
                raise v.combination(f"{name} of a member of replication group {rec.spec.replication_group_id} "
                                    "is changed with ModifyReplicationGroup.")
    spec = rec.spec.model_copy(deep=True)
    immediate = bool(params.get("ApplyImmediately"))
    pending = spec.pending.model_copy(deep=True)
    nodes_change = False
    if immediate and not pending.empty():
        # "ApplyImmediately: the modifications in this request and any pending modifications".
        if pending.num_nodes is not None:
            spec.num_nodes, spec.node_ids_to_remove = pending.num_nodes, list(pending.node_ids_to_remove)
        spec.engine_version = pending.engine_version or spec.engine_version
        spec.node_type = pending.node_type or spec.node_type
        pending, nodes_change = PendingChanges(), True

    if "NumCacheNodes" in params and params["NumCacheNodes"] != len(rec.status.nodes):
        count = params["NumCacheNodes"]
        if spec.engine != "memcached":
            raise v.invalid("NumCacheNodes can only be changed for Memcached clusters; Redis clusters have 1.")
        if count < 1:
            raise v.invalid("NumCacheNodes must be at least 1.")
        if count > MAX_MEMCACHED_NODES:
            raise ServiceError("NodeQuotaForClusterExceededFault",
                               f"A Memcached cluster can have at most {MAX_MEMCACHED_NODES} nodes.")
        current = len(rec.status.nodes)
        remove = list(params.get("CacheNodeIdsToRemove") or [])
        if count < current:
            if len(remove) != current - count:
                raise v.invalid(
                    f"CacheNodeIdsToRemove must list {current - count} node(s) to go from {current} to {count} nodes."
                )
            existing = {n.node_id for n in rec.status.nodes}
            unknown = [n for n in remove if n not in existing]
            if unknown or len(set(remove)) != len(remove):
                raise v.invalid(f"Invalid CacheNodeIdsToRemove: {', '.join(unknown) or 'duplicates'}")
        elif remove:
            raise v.combination("CacheNodeIdsToRemove is only valid when NumCacheNodes decreases.")
        else:
            _check_quota(ctx, count - current)
        if immediate:
            spec.num_nodes = count
            spec.node_ids_to_remove = remove
        else:
            pending.num_nodes = count
            pending.node_ids_to_remove = remove
        nodes_change = True
    elif params.get("CacheNodeIdsToRemove"):
        raise v.combination("CacheNodeIdsToRemove requires NumCacheNodes to be lower than the current count.")

    if params.get("EngineVersion") and params["EngineVersion"] != spec.engine_version:
        version = _engine_version(ctx, spec.engine, params["EngineVersion"])
        if _version_tuple(version) < _version_tuple(spec.engine_version):
            raise v.invalid(f"Cannot downgrade from {spec.engine_version} to {version}.")
        if immediate:
            spec.engine_version = version
        else:
            pending.engine_version = version
        nodes_change = True
    if params.get("CacheNodeType") and params["CacheNodeType"] != spec.node_type:
        node_type = _node_type(params["CacheNodeType"])
        if spec.engine == "memcached":
            raise v.combination("The node type of a Memcached cluster cannot be changed.")
        if immediate:
            spec.node_type = node_type
        else:
            pending.node_type = node_type
        nodes_change = True
    if params.get("AZMode") == "cross-az" and spec.engine != "memcached":
        raise v.invalid("The AZMode cross-az is only supported for Memcached clusters.")
    if params.get("PreferredMaintenanceWindow"):
        spec.maintenance_window = v.maintenance_window(params["PreferredMaintenanceWindow"])
    if "SnapshotRetentionLimit" in params or params.get("SnapshotWindow"):
        if spec.engine == "memcached":
            raise ServiceError("SnapshotFeatureNotSupportedFault",
                               "Snapshots are not supported for Memcached clusters.")
        if "SnapshotRetentionLimit" in params:
            if not 0 <= params["SnapshotRetentionLimit"] <= 35:
                raise v.invalid("SnapshotRetentionLimit must be between 0 and 35 days.")
            spec.snapshot_retention_limit = params["SnapshotRetentionLimit"]
        if params.get("SnapshotWindow"):
            spec.snapshot_window = v.snapshot_window(params["SnapshotWindow"])
    if "NotificationTopicArn" in params:
        spec.notification_topic_arn = params["NotificationTopicArn"] or None
    if "AutoMinorVersionUpgrade" in params:
        spec.auto_minor_version_upgrade = params["AutoMinorVersionUpgrade"]
    if "CacheSecurityGroupNames" in params:
        spec.security_group_names = list(params["CacheSecurityGroupNames"] or [])
    if "SecurityGroupIds" in params:
        spec.security_group_ids = list(params["SecurityGroupIds"] or [])
    if params.get("CacheParameterGroupName"):
        family = catalog.family_of(spec.engine, spec.engine_version)
        if params["CacheParameterGroupName"] != f"default.{family}":
            raise ServiceError("CacheParameterGroupNotFoundFault",
                               f"CacheParameterGroup {params['CacheParameterGroupName']} not found.")
    if params.get("AuthToken") or params.get("AuthTokenUpdateStrategy"):
        raise v.combination("AuthToken requires TransitEncryptionEnabled, which is not supported yet.")
    spec.pending = pending if not immediate else PendingChanges()

    def change(r: CacheCluster) -> None:
        unchanged_since_read(r, rec)
        r.spec = spec
        if nodes_change and immediate:
            r.generation += 1

    updated = ctx.services.store.update(rec.key, CacheCluster, change)
    assert updated is not None
    ctx.services.enqueue(rec.key)
    return {"CacheCluster": shapes.cache_cluster(updated, show_nodes=False)}


def unchanged_since_read(current: Any, read: Any) -> None:
    """Optimistic concurrency for handlers that rewrite a spec computed from an earlier read: if
    another request changed the resource meanwhile, refuse rather than silently undo it."""
    if current.generation != read.generation or current.spec != read.spec:
        raise ServiceError(
            "InvalidCacheClusterStateFault" if read.KIND == CacheCluster.KIND else "InvalidReplicationGroupStateFault",
            f"{read.id} was changed by another request meanwhile; retry.")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def reboot_cache_cluster(ctx: RequestContext, params: Params) -> Result:
    rec = _get(ctx, params["CacheClusterId"])
    _require_available(rec)
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
    return {"CacheCluster": shapes.cache_cluster(updated, show_nodes=False)}


def delete_cache_cluster(ctx: RequestContext, params: Params) -> Result:
    rec = _get(ctx, params["CacheClusterId"])
    if params.get("FinalSnapshotIdentifier"):
        if rec.spec.engine == "memcached":
            raise ServiceError("SnapshotFeatureNotSupportedFault",
                               "Snapshots are not supported for Memcached clusters.")
        raise v.combination("FinalSnapshotIdentifier is not supported by elasticache-local yet.")
    if rec.api_status() not in ("incompatible-network", "restore-failed"):  # failed ones can go
        _require_available(rec)
    if rec.spec.replication_group_id:
        from controlplane.handlers.replication_groups import get_group
        from controlplane.state.members import members_of

        rg = get_group(ctx, rec.spec.replication_group_id)
        if rg.status.failover is not None:
            raise ServiceError("InvalidReplicationGroupStateFault",
                               f"Replication group {rg.id} is failing over; delete {rec.id} afterwards.")
        if rg.status.primary == rec.id:
            raise ServiceError("InvalidCacheClusterStateFault",
                               f"Cache cluster {rec.id} is the primary of replication group {rg.id} and cannot be "
                               "deleted; delete the replication group or fail over first.")
        if rg.spec.automatic_failover and len(members_of(ctx.services.store, rg)) <= 2:
            raise ServiceError("InvalidReplicationGroupStateFault",
                               f"Cache cluster {rec.id} is the last replica of replication group {rg.id}, which has "
                               "automatic failover enabled.")

    def change(r: CacheCluster) -> None:
        r.spec.delete_requested = True
        r.generation += 1

    updated = ctx.services.store.update(rec.key, CacheCluster, change)
    assert updated is not None
    ctx.services.enqueue(rec.key)
    return {"CacheCluster": shapes.cache_cluster(updated, show_nodes=False)}


HANDLERS: dict[str, Handler] = {
    "CreateCacheCluster": create_cache_cluster,
    "DescribeCacheClusters": describe_cache_clusters,
    "ModifyCacheCluster": modify_cache_cluster,
    "RebootCacheCluster": reboot_cache_cluster,
    "DeleteCacheCluster": delete_cache_cluster,
}
