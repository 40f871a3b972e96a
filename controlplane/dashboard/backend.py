"""What the dashboard needs of the running service, and how it reads through the service layer.

A protocol (controlplane.service.Service is one), so this face does not import the assembly above
it. Every read goes through the handlers' Describe functions with a per-request context, the way
the JSON API reads: the dashboard shows what boto3 would be told."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from controlplane.admin.base import Backend
from controlplane.handlers.cache_clusters import describe_cache_clusters
from controlplane.handlers.context import RequestContext
from controlplane.handlers.events import recent_events
from controlplane.handlers.replication_groups import describe_replication_groups
from controlplane.handlers.snapshots import describe_snapshots
from controlplane.model import messages as m
from controlplane.reconciler.infra import Infra


class DashboardBackend(Backend, Protocol):
    infra: Infra  # which zones are interrupted


_T = TypeVar("_T")


def _pages(call: Callable[[str | None], tuple[list[_T], str | None]]) -> Iterator[_T]:
    """Every item of a paged Describe, following its Marker."""
    marker: str | None = None
    while True:
        items, marker = call(marker)
        yield from items
        if not marker:
            return


def _paged(params: dict[str, Any], marker: str | None) -> Any:
    if marker:
        params["Marker"] = marker
    return params


def all_clusters(ctx: RequestContext) -> list[m.CacheCluster]:
    def page(marker: str | None) -> tuple[list[m.CacheCluster], str | None]:
        out = describe_cache_clusters(ctx, _paged({"ShowCacheNodeInfo": True, "MaxRecords": 100}, marker))
        return out.get("CacheClusters", []), out.get("Marker")

    return list(_pages(page))


def all_groups(ctx: RequestContext) -> list[m.ReplicationGroup]:
    def page(marker: str | None) -> tuple[list[m.ReplicationGroup], str | None]:
        out = describe_replication_groups(ctx, _paged({"MaxRecords": 100}, marker))
        return out.get("ReplicationGroups", []), out.get("Marker")

    return list(_pages(page))


def events_of(ctx: RequestContext, sources: dict[str, str] | None = None, limit: int = 100) -> list[m.Event]:
    """The newest `limit` events, newest first: of every source, or of `sources` (id -> source
    type) only."""
    return recent_events(ctx, limit, sources)


def snapshots_of(ctx: RequestContext, *, cluster_id: str | None = None,
                 group_id: str | None = None) -> list[m.Snapshot]:
    def page(marker: str | None) -> tuple[list[m.Snapshot], str | None]:
        params: dict[str, Any] = {"MaxRecords": 50}
        if cluster_id:
            params["CacheClusterId"] = cluster_id
        if group_id:
            params["ReplicationGroupId"] = group_id
        out = describe_snapshots(ctx, _paged(params, marker))
        return out.get("Snapshots", []), out.get("Marker")

    return list(_pages(page))
