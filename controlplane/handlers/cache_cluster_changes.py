"""ModifyCacheCluster, and the node quotas that it and CreateCacheCluster keep."""

from __future__ import annotations

from controlplane.handlers import cache_security_groups, node_types, parameter_groups, security
from controlplane.handlers import defaults as d
from controlplane.handlers import validate as v
from controlplane.handlers.changes import NodeChanges, shared_settings, spec_to_change
from controlplane.handlers.context import RequestContext
from controlplane.handlers.lookup import cluster_shape, get_cluster, require_available, unchanged_since_read
from controlplane.model import messages as m
from controlplane.model.errors import (
    NodeQuotaForClusterExceededFault,
    NodeQuotaForCustomerExceededFault,
    SnapshotFeatureNotSupportedFault,
)
from controlplane.state.records import CacheCluster, CacheClusterSpec

MAX_MEMCACHED_NODES = 40  # AWS's default per-cluster quota


def check_node_quota(ctx: RequestContext, adding: int) -> None:
    used = sum(
        max(r.target().num_nodes, len(r.status.nodes))
        for r in ctx.services.store.records(CacheCluster, ctx.account, ctx.region)
    )
    quota = ctx.services.settings.node_quota  # AWS's default: 300
    if used + adding > quota:
        raise NodeQuotaForCustomerExceededFault(
            f"This request would exceed the {quota} cache nodes allowed per region.")


def modify_cache_cluster(ctx: RequestContext, params: m.ModifyCacheClusterMessage) -> m.ModifyCacheClusterResult:
    rec = get_cluster(ctx, params["CacheClusterId"])
    require_available(rec)
    if rec.spec.replication_group_id:
        _refuse_member_node_changes(params, rec.spec.replication_group_id)
    spec = spec_to_change(rec)
    nodes = NodeChanges.start(spec, bool(params.get("ApplyImmediately")))
    _node_count(ctx, rec, spec, params, nodes)
    _version_and_type(ctx, spec, params, nodes)
    _settings(spec, params)
    # A group's immediate values apply now, the others at the next reboot.
    spec.parameter_group = parameter_groups.group_on_modify(
        ctx, spec.engine, spec.parameter_group, rec.target().engine_version,
        params.get("EngineVersion") or rec.target().engine_version,
        params.get("CacheParameterGroupName")) or spec.parameter_group
    nodes.finish()
    secured = security.on_modify(ctx, rec, security.Asked(token=params.get("AuthToken"),
                                                          strategy=params.get("AuthTokenUpdateStrategy")))
    if secured is not None:
        spec.security = secured
        security.require_transit_supported(ctx, spec.engine, rec.target().engine_version, secured)  # last: the gate

    def change(r: CacheCluster) -> None:
        unchanged_since_read(r, rec)
        r.spec = spec
        if nodes.restart or secured is not None:  # a new token goes to the nodes now
            r.generation += 1

    updated = ctx.services.store.update(rec.key, CacheCluster, change)
    assert updated is not None
    ctx.services.enqueue(rec.key)
    return {"CacheCluster": cluster_shape(updated)}


def _refuse_member_node_changes(params: m.ModifyCacheClusterMessage, group_id: str) -> None:
    given = {"NumCacheNodes": params.get("NumCacheNodes"), "CacheNodeType": params.get("CacheNodeType"),
             "EngineVersion": params.get("EngineVersion"), "CacheNodeIdsToRemove": params.get("CacheNodeIdsToRemove"),
             "CacheParameterGroupName": params.get("CacheParameterGroupName")}
    for name, value in given.items():
        if value is not None:
            raise v.combination(f"{name} of a member of replication group {group_id} is changed with "
                                "ModifyReplicationGroup.")


def _node_count(ctx: RequestContext, rec: CacheCluster, spec: CacheClusterSpec, params: m.ModifyCacheClusterMessage,
                nodes: NodeChanges) -> None:
    """NumCacheNodes (memcached): nodes added, or the ones CacheNodeIdsToRemove names removed."""
    current = len(rec.status.nodes)
    count = params.get("NumCacheNodes", current)
    remove = list(params.get("CacheNodeIdsToRemove", []))
    if count == current:
        if remove:
            raise v.combination("CacheNodeIdsToRemove requires NumCacheNodes to be lower than the current count.")
        return
    if spec.engine != "memcached":
        raise v.invalid("NumCacheNodes can only be changed for Memcached clusters; Redis clusters have 1.")
    if count < 1:
        raise v.invalid("NumCacheNodes must be at least 1.")
    if count > MAX_MEMCACHED_NODES:
        raise NodeQuotaForClusterExceededFault(f"A Memcached cluster can have at most {MAX_MEMCACHED_NODES} nodes.")
    if count < current:
        if len(remove) != current - count:
            raise v.invalid(
                f"CacheNodeIdsToRemove must list {current - count} node(s) to go from {current} to {count} nodes.")
        existing = {n.node_id for n in rec.status.nodes}
        unknown = [n for n in remove if n not in existing]
        if unknown or len(set(remove)) != len(remove):
            raise v.invalid(f"Invalid CacheNodeIdsToRemove: {', '.join(unknown) or 'duplicates'}")
    elif remove:
        raise v.combination("CacheNodeIdsToRemove is only valid when NumCacheNodes decreases.")
    else:
        check_node_quota(ctx, count - current)
    nodes.num_nodes(spec, count, remove)


def _version_and_type(ctx: RequestContext, spec: CacheClusterSpec, params: m.ModifyCacheClusterMessage,
                      nodes: NodeChanges) -> None:
    version = d.version_change(ctx, spec.engine, spec.engine_version, params.get("EngineVersion"))
    if version:
        nodes.engine_version(version)
    node_type = params.get("CacheNodeType")
    if node_type and node_type != spec.node_type:
        node_type = v.node_type(node_type)
        if spec.engine == "memcached":
            raise v.combination("The node type of a Memcached cluster cannot be changed.")
        nodes.node_type(node_types.modification(spec.node_type, node_type))


def _settings(spec: CacheClusterSpec, params: m.ModifyCacheClusterMessage) -> None:
    """The changes that need no node to restart."""
    if params.get("AZMode") == "cross-az" and spec.engine != "memcached":
        raise v.invalid("The AZMode cross-az is only supported for Memcached clusters.")
    shared_settings(spec, params)
    _snapshot_settings(spec, params)
    if params.get("PreferredMaintenanceWindow") or params.get("SnapshotWindow"):
        v.no_overlap(spec.maintenance_window, spec.snapshot_window)
    cache_security_groups.refuse_names(params)


def _snapshot_settings(spec: CacheClusterSpec, params: m.ModifyCacheClusterMessage) -> None:
    window = params.get("SnapshotWindow")
    if "SnapshotRetentionLimit" not in params and not window:
        return
    if spec.engine == "memcached":
        raise SnapshotFeatureNotSupportedFault("Snapshots are not supported for Memcached clusters.")
    if "SnapshotRetentionLimit" in params:
        spec.snapshot_retention_limit = v.retention(params["SnapshotRetentionLimit"])
    if window:
        spec.snapshot_window = v.snapshot_window(window)
