"""What the dashboard needs of the running service, and how it reads through the service layer.

A protocol (controlplane.service.Service is one), so this face does not import the assembly above
it. Every read goes through the handlers' Describe functions with a per-request context, the way
the JSON API reads: the dashboard shows what boto3 would be told."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from controlplane.admin.base import Backend
from controlplane.handlers.cache_clusters import describe_cache_clusters
from controlplane.handlers.context import RequestContext
from controlplane.handlers.events import describe_events
from controlplane.handlers.replication_groups import describe_replication_groups
from controlplane.handlers.snapshots import describe_snapshots
from controlplane.model import messages as m
from controlplane.reconciler.infra import Infra

# DescribeEvents' longest look back (14 days), so a clock advanced by days still shows them.
EVENT_MINUTES = 20160


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


# Look-back windows (seconds) tried in turn for the newest events: the store reads every event of
# a window, so the shortest one that holds enough keeps a page cheap on a busy service.
_LOOK_BACK = (10, 60, 600, 3600, 86400, EVENT_MINUTES * 60)


def events_of(ctx: RequestContext, sources: dict[str, str] | None = None, limit: int = 100) -> list[m.Event]:
    """The newest `limit` events, newest first: of every source, or of `sources` (id -> source
    type) only, each asked for by SourceType and SourceIdentifier as DescribeEvents filters."""
    now = ctx.services.clock.now()

    def window(seconds: int, filters: dict[str, Any]) -> list[m.Event]:
        def page(marker: str | None) -> tuple[list[m.Event], str | None]:
            params = {**filters, "StartTime": now - timedelta(seconds=seconds), "EndTime": now, "MaxRecords": 100}
            out = describe_events(ctx, _paged(params, marker))
            return out.get("Events", []), out.get("Marker")

        return list(_pages(page))

    wanted = [{}] if sources is None else [{"SourceType": t, "SourceIdentifier": i} for i, t in sources.items()]
    for seconds in _LOOK_BACK:
        found = [e for filters in wanted for e in window(seconds, filters)]
        if len(found) >= limit:
            break
    found.sort(key=lambda e: e["Date"], reverse=True)
    return found[:limit]


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
