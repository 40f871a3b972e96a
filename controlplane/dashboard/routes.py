"""The dashboard's pages and the fragments htmx re-fetches when the live feed says something
changed. Server-rendered: every page reads completely with JavaScript off.

Route functions are plain `def`: FastAPI runs them on its thread pool, so reading the store
never holds the event loop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from controlplane import catalog
from controlplane.dashboard import actions, views
from controlplane.dashboard.backend import DashboardBackend, events_of, snapshots_of
from controlplane.dashboard.docs import docs_router
from controlplane.dashboard.rendered import ChangeVersion, RenderedTables
from controlplane.handlers.cache_clusters import describe_cache_clusters
from controlplane.handlers.context import RequestContext
from controlplane.handlers.engines import describe_cache_engine_versions
from controlplane.handlers.replication_groups import describe_replication_groups
from controlplane.model import messages as m
from controlplane.protocol.errors import ServiceError

HERE = Path(__file__).resolve().parent


def backend_of(request: Request) -> DashboardBackend:
    backend: DashboardBackend = request.app.state.service
    return backend


def context(request: Request, account: str | None, region: str | None) -> RequestContext:
    backend = backend_of(request)
    return backend.services.context(account or backend.settings.default_account, region or backend.settings.region)


def _filter(account: str | None, region: str | None) -> str:
    return urlencode({k: v for k, v in (("account", account), ("region", region)) if v})


def _ago(when: datetime, now: datetime) -> str:
    seconds = int((now - when).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    # The templates ship with the package and do not change under a running service: no stat()
    # of every template file on every render.
    templates.env.auto_reload = False
    templates.env.filters["utc"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-"
    templates.env.globals["ago"] = _ago
    return templates


def install(app: FastAPI) -> None:
    """The dashboard on `app` (whose state.service is set): pages, actions, static assets, and
    the offline /docs."""
    templates = make_templates()
    backend: DashboardBackend = app.state.service
    tables = RenderedTables(ChangeVersion(backend.store, backend.health))
    app.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.include_router(page_router(templates, tables))
    app.include_router(actions.action_router(templates))
    app.include_router(docs_router())


def front_page(request: Request) -> Response:
    """A browser's plain GET / (no Action): the dashboard."""
    return RedirectResponse("/dashboard", status_code=303)


def _scope(request: Request, account: str | None, region: str | None) -> list[RequestContext]:
    """The contexts the overview reads: one account/region, or every one that has caches."""
    backend = backend_of(request)
    return [backend.services.context(a, r) for a, r in views.places(backend)
            if (not account or a == account) and (not region or r == region)]


def _common(request: Request, account: str | None, region: str | None) -> dict[str, Any]:
    backend = backend_of(request)
    return {"now": backend.clock.now(), "account": account or "", "region": region or "",
            "filter": _filter(account, region), "places": views.places(backend),
            "notice": request.query_params.get("done", ""), "here": str(request.url.path) + (
                f"?{request.url.query}" if request.url.query else "")}


def page_router(templates: Jinja2Templates, tables: RenderedTables) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    render = templates.TemplateResponse
    caches_template = templates.get_template("fragments/caches.html")

    def caches_table(request: Request, account: str | None, region: str | None) -> Markup:
        """The table of caches (kept until something it shows changes: controlplane.dashboard.rendered)."""
        def fresh() -> str:
            backend = backend_of(request)
            found = [c for ctx in _scope(request, account, region) for c in views.caches(backend, ctx)]
            return caches_template.render(request=request, caches=found, account=account or "",
                                          region=region or "")

        return Markup(tables.get((account, region, request.url.netloc), fresh))

    def recent_events(request: Request, account: str | None, region: str | None) -> dict[str, Any]:
        events = sorted((e for ctx in _scope(request, account, region) for e in events_of(ctx, limit=20)),
                        key=lambda e: e["Date"], reverse=True)[:20]
        return {**_common(request, account, region), "events": events}

    @router.get("/dashboard", response_class=HTMLResponse)
    def overview(request: Request, account: str | None = Query(None), region: str | None = Query(None)) -> Response:
        backend = backend_of(request)
        zone_region = region or backend.settings.region
        down = backend.infra.down_azs
        now = backend.clock.monotonic()
        zones = [(az, max(0.0, down[az] - now) if az in down and down[az] > now else None)
                 for az in catalog.availability_zones(zone_region)]
        return render(request, "overview.html", {"caches_table": caches_table(request, account, region),
                                                  **recent_events(request, account, region), "zones": zones,
                                                  "zone_region": zone_region,
                                                  "clock_offset": backend.clock.offset().total_seconds()})

    @router.get("/dashboard/fragments/caches", response_class=HTMLResponse)
    def caches_fragment(request: Request, account: str | None = Query(None),
                        region: str | None = Query(None)) -> Response:
        return HTMLResponse(caches_table(request, account, region))

    @router.get("/dashboard/fragments/cache-row", response_class=HTMLResponse)
    def cache_row(request: Request, kind: Literal["cache-cluster", "replication-group"] = Query(...),
                  id: str = Query(...),
                  account: str | None = Query(None), region: str | None = Query(None)) -> Response:
        """The overview row showing one cache, for the live feed's message about it: a cache
        cluster that belongs to a replication group is shown by the group's row. 204 when the
        cache is gone (the page removes its row)."""
        backend = backend_of(request)
        ctx = context(request, account, region)
        try:
            if kind == "cache-cluster":
                found = describe_cache_clusters(ctx, {"CacheClusterId": id, "ShowCacheNodeInfo": True})[
                    "CacheClusters"][0]
                group_id = found.get("ReplicationGroupId")
                view = views.cluster(backend, ctx, found) if not group_id else None
            else:
                group_id, view = id, None
            if view is None:
                assert group_id is not None
                group = describe_replication_groups(ctx, {"ReplicationGroupId": group_id})["ReplicationGroups"][0]
                view = views.group(backend, ctx, group)
        except ServiceError:  # gone (or never there): nothing to show
            return Response(status_code=204)
        return render(request, "fragments/cache_row.html", {"c": view})

    @router.get("/dashboard/fragments/events", response_class=HTMLResponse)
    def events_fragment(request: Request, account: str | None = Query(None),
                        region: str | None = Query(None)) -> Response:
        return render(request, "fragments/recent_events.html", recent_events(request, account, region))

    def group_data(request: Request, group_id: str, account: str | None, region: str | None) -> dict[str, Any]:
        backend = backend_of(request)
        ctx = context(request, account, region)
        found: m.ReplicationGroup = describe_replication_groups(ctx, {"ReplicationGroupId": group_id})[
            "ReplicationGroups"][0]
        view = views.group(backend, ctx, found)
        sources = {view.id: "replication-group", **{c["CacheClusterId"]: "cache-cluster" for c in view.members}}
        retention = found.get("SnapshotRetentionLimit", 0)
        return {**_common(request, ctx.account, ctx.region), "cache": view, "raw": found,
                "events": events_of(ctx, sources), "snapshots": snapshots_of(ctx, group_id=view.id),
                "pending": views.pending(view, found),
                "windows": views.next_windows(view, found.get("SnapshotWindow"), retention, backend.clock.now())}

    def cluster_data(request: Request, cluster_id: str, account: str | None, region: str | None) -> dict[str, Any]:
        backend = backend_of(request)
        ctx = context(request, account, region)
        found: m.CacheCluster = describe_cache_clusters(ctx, {"CacheClusterId": cluster_id,
                                                              "ShowCacheNodeInfo": True})["CacheClusters"][0]
        view = views.cluster(backend, ctx, found)
        snapshots = [] if view.engine == "memcached" else snapshots_of(ctx, cluster_id=view.id)
        return {**_common(request, ctx.account, ctx.region), "cache": view, "raw": found,
                "events": events_of(ctx, {view.id: "cache-cluster"}), "snapshots": snapshots,
                "pending": views.pending(view, None),
                "windows": views.next_windows(view, found.get("SnapshotWindow"),
                                              found.get("SnapshotRetentionLimit", 0), backend.clock.now())}

    def page(request: Request, name: str, data: Any, *args: Any) -> Response:
        try:
            return render(request, name, data(request, *args))
        except ServiceError as err:
            return actions.error_page(templates, request, err)

    @router.get("/dashboard/replication-groups/{group_id}", response_class=HTMLResponse)
    def group_page(request: Request, group_id: str, account: str | None = Query(None),
                   region: str | None = Query(None)) -> Response:
        return page(request, "cache.html", group_data, group_id, account, region)

    @router.get("/dashboard/replication-groups/{group_id}/live", response_class=HTMLResponse)
    def group_live(request: Request, group_id: str, account: str | None = Query(None),
                   region: str | None = Query(None)) -> Response:
        return page(request, "fragments/cache_live.html", group_data, group_id, account, region)

    @router.get("/dashboard/cache-clusters/{cluster_id}", response_class=HTMLResponse)
    def cluster_page(request: Request, cluster_id: str, account: str | None = Query(None),
                     region: str | None = Query(None)) -> Response:
        return page(request, "cache.html", cluster_data, cluster_id, account, region)

    @router.get("/dashboard/cache-clusters/{cluster_id}/live", response_class=HTMLResponse)
    def cluster_live(request: Request, cluster_id: str, account: str | None = Query(None),
                     region: str | None = Query(None)) -> Response:
        return page(request, "fragments/cache_live.html", cluster_data, cluster_id, account, region)

    @router.get("/dashboard/create", response_class=HTMLResponse)
    def create_form(request: Request, account: str | None = Query(None), region: str | None = Query(None)) -> Response:
        ctx = context(request, account, region)
        versions = describe_cache_engine_versions(ctx, {"MaxRecords": 100}).get("CacheEngineVersions", [])
        return render(request, "create.html", {
            **_common(request, ctx.account, ctx.region), "versions": versions, "defaults": catalog.DEFAULT_VERSIONS,
            "node_types": sorted(catalog.NODE_TYPES), "zones": catalog.availability_zones(ctx.region)})

    return router
