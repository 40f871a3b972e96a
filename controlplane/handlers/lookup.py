"""Resources as handlers find them: read from the store (or refused with the model's NotFound
fault), checked for state, and rendered as the model's response shapes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar, cast

from controlplane.handlers.context import RequestContext
from controlplane.model import messages as m
from controlplane.model.errors import (
    CacheClusterNotFoundFault,
    InvalidCacheClusterStateFault,
    InvalidParameterCombinationException,
    InvalidReplicationGroupStateFault,
    ReplicationGroupNotFoundFault,
)
from controlplane.state import shapes
from controlplane.state.global_datastores import of_group
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, Record, ReplicationGroup

R = TypeVar("R", bound=Record)


def ensure_builtin(ctx: RequestContext, model: type[R], resource_id: str,
                   build: Callable[[str, str, datetime], R]) -> None:
    """A record AWS has in every account and region (the `default` user, the `default` subnet
    group), stored on first use so that tags and paging treat it as any other."""
    store = ctx.services.store
    if store.get(ctx.key(model.KIND, resource_id), model) is None:
        store.create(build(ctx.account, ctx.region, ctx.services.clock.now()))


def get_or_builtin(ctx: RequestContext, model: type[R], value: str, builtin_id: str,
                   build: Callable[[str, str, datetime], R], missing: Callable[[str], Exception]) -> R:
    """A record by its id (stored lower-case), the built-in one included; else `missing(value)`."""
    ensure_builtin(ctx, model, builtin_id, build)
    rec = ctx.services.store.get(ctx.key(model.KIND, value.lower()), model)
    if rec is None:
        raise missing(value)
    return rec


def get_cluster(ctx: RequestContext, cluster_id: str) -> CacheCluster:
    rec = ctx.services.store.get(ctx.key(CacheCluster.KIND, cluster_id.lower()), CacheCluster)
    if rec is None:
        raise CacheClusterNotFoundFault(f"CacheCluster not found: {cluster_id}")
    return rec


def get_group(ctx: RequestContext, group_id: str) -> ReplicationGroup:
    rg = ctx.services.store.get(ctx.key(ReplicationGroup.KIND, group_id.lower()), ReplicationGroup)
    if rg is None:
        raise ReplicationGroupNotFoundFault(f"ReplicationGroup {group_id} not found.")
    return rg


def refuse_cluster_mode(rg: ReplicationGroup, what: str) -> None:
    """What is not built for cluster mode enabled yet is refused, never half done."""
    if rg.cluster_enabled:
        raise InvalidParameterCombinationException(
            f"{what} is not supported by elasticache-local yet for a replication group with cluster mode enabled.")


def require_available(rec: CacheCluster | ReplicationGroup) -> None:
    if rec.api_status() == "available":
        return
    if isinstance(rec, CacheCluster):
        raise InvalidCacheClusterStateFault(
            f"Cache cluster {rec.id} is not in the available state (it is {rec.api_status()}).")
    raise InvalidReplicationGroupStateFault(
        f"Replication group {rec.id} is not in the available state (it is {rec.api_status()}).")


def unchanged_since_read(current: CacheCluster | ReplicationGroup, read: CacheCluster | ReplicationGroup) -> None:
    """Optimistic concurrency for handlers that rewrite a spec computed from an earlier read: if
    another request changed the resource meanwhile, refuse rather than silently undo it. The
    maintenance window's application of pending changes counts too: the spec a modify writes is
    computed from it (changes.spec_to_change)."""
    if (current.generation != read.generation or current.spec != read.spec
            or current.status.pending_applied != read.status.pending_applied):
        message = f"{read.id} was changed by another request meanwhile; retry."
        if isinstance(read, CacheCluster):
            raise InvalidCacheClusterStateFault(message)
        raise InvalidReplicationGroupStateFault(message)


def bump_generation(rec: CacheCluster | ReplicationGroup) -> None:
    rec.generation += 1


def request_delete(rec: CacheCluster | ReplicationGroup) -> None:
    rec.spec.delete_requested = True
    rec.generation += 1


# state.shapes renders plain dicts keyed by the model's member names (a test checks them against
# the model); these say which shape each one is.

def cluster_shape(rec: CacheCluster) -> m.CacheCluster:
    """As a write returns it: without its nodes."""
    return cast(m.CacheCluster, shapes.cache_cluster(rec, show_nodes=False))


def described_cluster(ctx: RequestContext, rec: CacheCluster, show_nodes: bool) -> m.CacheCluster:
    """As reads return it. Cached: a stored record is never mutated, so one rendering serves every read."""
    rendered = ctx.services.cached_shape(rec, show_nodes, lambda: shapes.cache_cluster(rec, show_nodes))
    return cast(m.CacheCluster, rendered)


def group_shape(ctx: RequestContext, rg: ReplicationGroup) -> m.ReplicationGroup:
    shape = cast(m.ReplicationGroup, shapes.replication_group(rg, members_of(ctx.services.store, rg)))
    g = of_group(ctx.services.store, rg)
    if g is not None:
        role = g.role_of(rg) or "secondary"
        shape["GlobalReplicationGroupInfo"] = {"GlobalReplicationGroupId": g.id,
                                               "GlobalReplicationGroupMemberRole": role.upper()}
    return shape
