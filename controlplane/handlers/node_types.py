"""ListAllowedNodeTypeModifications: the node types a redis or valkey cache can scale to (none for
memcached, whose node type ModifyCacheCluster does not change), from AWS's node-type
table (catalog.NODE_TYPES): up to every type with more memory, down to every type with less.
Not offered: the retired types AWS no longer launches (t1, m1, m2, c1), and the data-tiering
types (r6gd), which a cache can only move between among themselves."""

from __future__ import annotations

from controlplane import catalog
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import get_cluster, get_group
from controlplane.model import messages as m

RETIRED = ("cache.t1.", "cache.m1.", "cache.m2.", "cache.c1.")
DATA_TIERING = "cache.r6gd."


def allowed(current: str) -> tuple[list[str], list[str]]:
    """(scale up, scale down) from a node type, each by memory, smallest first."""
    now = catalog.NODE_TYPES[current]
    tiering = current.startswith(DATA_TIERING)
    candidates = sorted((t for t in catalog.NODE_TYPES.values()
                         if not t.name.startswith(RETIRED) and t.name.startswith(DATA_TIERING) == tiering
                         and t.name != current), key=lambda t: (t.memory_gib, t.name))
    return ([t.name for t in candidates if t.memory_gib > now.memory_gib],
            [t.name for t in candidates if t.memory_gib < now.memory_gib])


def modification(current: str, wanted: str) -> str:
    """ModifyCacheCluster / ModifyReplicationGroup CacheNodeType: only a type the cache's
    ListAllowedNodeTypeModifications lists (a retired type, a data-tiering type to or from
    another family, and a type of the same memory are refused, as AWS refuses them)."""
    up, down = allowed(current)
    if wanted not in up and wanted not in down:
        raise v.combination(f"Cannot modify cache node type from {current} to {wanted}: it is not among the node "
                            "types ListAllowedNodeTypeModifications lists for this cache.")
    return wanted


def list_allowed_node_type_modifications(ctx: RequestContext, params: m.ListAllowedNodeTypeModificationsMessage
                                         ) -> m.AllowedNodeTypeModificationsMessage:
    cluster_id, group_id = params.get("CacheClusterId"), params.get("ReplicationGroupId")
    if bool(cluster_id) == bool(group_id):
        raise v.combination("You must provide a value for either the CacheClusterId or the ReplicationGroupId "
                            "parameter, but not both.")
    target = get_cluster(ctx, cluster_id).target() if cluster_id else get_group(ctx, group_id or "").target()
    if target.engine == "memcached":  # ModifyCacheCluster refuses a new node type for memcached
        return {"ScaleUpModifications": [], "ScaleDownModifications": []}
    up, down = allowed(target.node_type)
    return {"ScaleUpModifications": up, "ScaleDownModifications": down}


HANDLERS: HandlerTable = {"ListAllowedNodeTypeModifications": list_allowed_node_type_modifications}
