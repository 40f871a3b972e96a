"""The dashboard's actions: plain HTML forms POSTed to /dashboard/actions/<name>.

Every action is confirmed: a POST without `confirmed=yes` answers a page that says what will
happen, with the same fields and a Confirm button (so it works with JavaScript off). A confirmed
action calls the service layer's handler (or the admin fault injector, or the service clock):
never a rule of its own. A refusal is shown with the AWS error code and message, under the HTTP
status AWS answers with; success redirects back to the page it came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from controlplane.dashboard.backend import DashboardBackend
from controlplane.handlers import cache_clusters, replicas, replication_groups, snapshots
from controlplane.handlers.context import RequestContext
from controlplane.model import messages as m
from controlplane.protocol.errors import ServiceError

Fields = dict[str, str]


class Refused(Exception):
    """A form that cannot be acted on as filled in (a missing field, a number that is not one)."""


@dataclass(frozen=True)
class Action:
    title: str  # the confirm page's heading and button
    says: Callable[[Fields], str]  # what will happen, for the confirm page
    run: Callable[[DashboardBackend, RequestContext, Fields], str]  # does it; the message shown after
    danger: bool = False


def _need(fields: Fields, name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise Refused(f"{name} is required")
    return value


def _int(fields: Fields, name: str, default: int) -> int:
    raw = fields.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise Refused(f"{name} must be a whole number, not {raw!r}") from None


def _create(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    engine, cache_id = _need(f, "engine"), _need(f, "id")
    version, node_type = f.get("version") or None, _need(f, "node_type")
    replicas_wanted = _int(f, "replicas", 0)
    if f.get("kind") == "replication-group":
        group: m.CreateReplicationGroupMessage = {
            "ReplicationGroupId": cache_id, "ReplicationGroupDescription": f.get("description") or cache_id,
            "Engine": engine, "CacheNodeType": node_type, "NumCacheClusters": replicas_wanted + 1,
            "AutomaticFailoverEnabled": f.get("automatic_failover") == "on",
            "MultiAZEnabled": f.get("multi_az") == "on"}
        if version:
            group["EngineVersion"] = version
        replication_groups.create_replication_group(ctx, group)
        return f"Replication group {cache_id} is being created"
    cluster: m.CreateCacheClusterMessage = {"CacheClusterId": cache_id, "Engine": engine, "CacheNodeType": node_type,
                                            "NumCacheNodes": _int(f, "nodes", 1)}
    if version:
        cluster["EngineVersion"] = version
    cache_clusters.create_cache_cluster(ctx, cluster)
    return f"Cache cluster {cache_id} is being created"


def _delete(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    cache_id = _need(f, "id")
    if f.get("kind") == "replication-group":
        replication_groups.delete_replication_group(ctx, {"ReplicationGroupId": cache_id})
        return f"Replication group {cache_id} is being deleted"
    cache_clusters.delete_cache_cluster(ctx, {"CacheClusterId": cache_id})
    return f"Cache cluster {cache_id} is being deleted"


def _reboot(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    cluster_id, node_id = _need(f, "cluster_id"), _need(f, "node_id")
    cache_clusters.reboot_cache_cluster(ctx, {"CacheClusterId": cluster_id, "CacheNodeIdsToReboot": [node_id]})
    return f"Cache node {node_id} of {cluster_id} is rebooting"


def _failover(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    group_id, node_group = _need(f, "id"), f.get("node_group") or "0001"
    replicas.test_failover(ctx, {"ReplicationGroupId": group_id, "NodeGroupId": node_group})
    return f"Test failover of node group {node_group} of {group_id} started"


def _node_fault(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    return backend.faults.node(ctx.account, ctx.region, _need(f, "cluster_id"), _need(f, "node_id"),
                               _need(f, "fault"))


def _zone_down(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    az, seconds = _need(f, "az"), _int(f, "seconds", 60)
    hit = backend.faults.interrupt_az(az, seconds)
    return f"{az} interrupted for {seconds} s: {len(hit)} node(s) down"


def _zone_up(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    az = _need(f, "az")
    backend.faults.restore_az(az)
    return f"{az} restored"


def _snapshot(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    cache_id, name = _need(f, "id"), _need(f, "name")
    params: m.CreateSnapshotMessage = {"SnapshotName": name}
    if f.get("kind") == "replication-group":
        params["ReplicationGroupId"] = cache_id
    else:
        params["CacheClusterId"] = cache_id
    snapshots.create_snapshot(ctx, params)
    return f"Snapshot {name} of {cache_id} is being created"


def _advance(backend: DashboardBackend, ctx: RequestContext, f: Fields) -> str:
    seconds = _int(f, "seconds", 0)
    try:
        done = backend.advance_clock(seconds)
    except ValueError as exc:
        raise Refused(str(exc)) from exc
    return f"Clock advanced {seconds} s, through {len(done.windows)} window start(s)"


_NODE_VERB = {"kill": "Kill", "stop": "Stop", "pause": "Freeze", "resume": "Resume"}

ACTIONS: dict[str, Action] = {
    "create": Action("Create", lambda f: (
        f"Create {'replication group' if f.get('kind') == 'replication-group' else 'cache cluster'} "
        f"{f.get('id', '')}: {f.get('engine', '')} {f.get('version') or '(default version)'} on "
        f"{f.get('node_type', '')}" + (f" with {f.get('replicas') or 0} replica(s)"
                                        if f.get("kind") == "replication-group" else "")), _create),
    "delete": Action("Delete", lambda f: f"Delete {f.get('kind', '')} {f.get('id', '')}, its nodes and their data.",
                     _delete, danger=True),
    "reboot": Action("Reboot", lambda f: f"Reboot cache node {f.get('node_id')} of {f.get('cluster_id')}.", _reboot),
    "failover": Action("Test failover", lambda f: (
        f"Fail over node group {f.get('node_group') or '0001'} of replication group {f.get('id')}: its primary "
        "is replaced by a replica (TestFailover)."), _failover, danger=True),
    "node-fault": Action("Inject fault", lambda f: (
        f"{_NODE_VERB.get(f.get('fault', ''), f.get('fault', ''))} cache node {f.get('node_id')} of "
        f"{f.get('cluster_id')}, as a real failure would."), _node_fault, danger=True),
    "zone-down": Action("Interrupt zone", lambda f: (
        f"Interrupt availability zone {f.get('az')} for {f.get('seconds') or 60} s: every node in it goes down."),
        _zone_down, danger=True),
    "zone-up": Action("Restore zone", lambda f: f"End the interruption of availability zone {f.get('az')} now.",
                      _zone_up),
    "snapshot": Action("Take snapshot", lambda f: f"Take snapshot {f.get('name')} of {f.get('id')}.", _snapshot),
    "advance-clock": Action("Advance clock", lambda f: (
        f"Move the service clock {f.get('seconds')} s forward; every maintenance and snapshot window on the way "
        "fires."), _advance),
}


def _back(fields: Fields) -> str:
    """Where to go after the action: the page it came from, if it is a dashboard page."""
    parts = urlsplit(fields.get("next", ""))
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard"):
        return "/dashboard"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "done"]  # the previous action's notice
    return parts.path + (f"?{urlencode(query)}" if query else "")


def error_page(templates: Jinja2Templates, request: Request, err: ServiceError) -> Response:
    backend: DashboardBackend = request.app.state.service
    code, status, side = err.resolve(backend.api)
    return templates.TemplateResponse(request, "error.html", {"code": code, "message": err.message, "side": side},
                                      status_code=status)


def _same_origin(request: Request) -> bool:
    """A browser's cross-site form post carries its Origin: refused, so no web page can act here."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def action_router(templates: Jinja2Templates) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def refused(request: Request, code: str, message: str, status: int) -> Response:
        return templates.TemplateResponse(request, "error.html", {"code": code, "message": message, "side": "Sender"},
                                          status_code=status)

    @router.post("/dashboard/actions/{name}")
    async def act(request: Request, name: str) -> Response:
        action = ACTIONS.get(name)
        if action is None:
            return refused(request, "UnknownAction", f"no dashboard action {name!r}", 404)
        if not _same_origin(request):
            return refused(request, "CrossOriginRefused", "actions are only taken from this service's own pages", 403)
        fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if fields.get("confirmed") != "yes":
            return templates.TemplateResponse(request, "confirm.html", {
                "name": name, "action": action, "says": action.says(fields),
                "fields": {k: v for k, v in fields.items() if k != "confirmed"}, "back": _back(fields)})
        backend: DashboardBackend = request.app.state.service
        who = backend.services.context(fields.get("account") or backend.settings.default_account,
                                       fields.get("region") or backend.settings.region)
        try:
            # Handlers write SQLite, faults stop processes, the clock waits for the loop: a worker thread.
            message = await run_in_threadpool(action.run, backend, who, fields)
        except ServiceError as err:
            return error_page(templates, request, err)
        except Refused as exc:
            return refused(request, "InvalidParameterValue", str(exc), 400)
        back = _back(fields)
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}{urlencode({'done': message})}", status_code=303)

    return router
