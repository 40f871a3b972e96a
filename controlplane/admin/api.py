"""The JSON REST API under /api/v1 (plus moto's reset path), for scripts and the dashboard.

Resources are read through the same service layer as the Query API (controlplane.handlers), so
every rule lives once: the answers are the AWS shapes (controlplane.model.messages) as JSON, and
a refusal is the AWS error (code, HTTP status, Sender/Receiver) from the same exception classes.
Admin actions that AWS does not have (health, faults, reset) are here too.

Endpoints are plain `def`: FastAPI runs them on worker threads, so the blocking ones (reset
stops nodes) never hold the event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from controlplane.admin.faults import FaultError, FaultInjector
from controlplane.clock import Clock
from controlplane.handlers.cache_clusters import describe_cache_clusters
from controlplane.handlers.context import RequestContext, Services
from controlplane.handlers.events import describe_events
from controlplane.handlers.replication_groups import describe_replication_groups
from controlplane.model import messages as m
from controlplane.protocol.errors import ServiceError, internal_failure
from controlplane.protocol.model import ApiModel
from controlplane.reconciler.timewarp import MAX_ADVANCE, Advanced
from controlplane.settings import Settings
from controlplane.state.records import CacheCluster
from controlplane.state.store import Store
from engine import NodeRuntime

log = logging.getLogger("elasticache_local.api")

API_TITLE = "elasticache-local"
API_VERSION = "0.1.0"
API_DESCRIPTION = ("JSON API of elasticache-local: resources, health and admin actions. "
                   "The AWS ElastiCache Query API is served at POST /.")


class Health(BaseModel):
    status: str
    runtime: str
    addressing: str
    l4_proxy: str
    cache_clusters: int
    nodes: int
    nodes_available: int
    engines: dict[str, list[str]]


class ResetResult(BaseModel):
    status: str
    deleted: int


class ApiError(BaseModel):
    """A refusal of the service layer: the AWS error code (e.g. CacheClusterNotFound), its message,
    and who is to blame (Sender or Receiver). The HTTP status is the one AWS answers with."""

    code: str
    message: str
    type: str


class NodeFault(BaseModel):
    cluster_id: str
    node_id: str = "0001"
    action: str  # kill | stop | pause | resume
    account: str = "123456789012"
    region: str = "us-east-1"


class AzFault(BaseModel):
    availability_zone: str
    seconds: float = 60.0


class FaultResult(BaseModel):
    message: str
    nodes: list[str] = []


class ClockState(BaseModel):
    now: datetime = Field(description="The service clock: real time plus the offset, UTC")
    offset_seconds: float = Field(description="How far the clock has been advanced in all")


class ClockAdvance(BaseModel):
    seconds: float = Field(gt=0, le=MAX_ADVANCE.total_seconds(), description="How far to move on (at most 400 days)")


class PassedWindow(BaseModel):
    resource: str = Field(description="<kind>/<id>, e.g. cache-cluster/web")
    window: str
    start: datetime


class BadRequest(BaseModel):
    detail: str


class ClockAdvanced(ClockState):
    windows: list[PassedWindow] = Field(description="The window starts passed through, in order")


class Backend(Protocol):
    """What the JSON API needs of the running service (controlplane.service.Service is one); a
    protocol, so this face does not depend on the assembly above it."""

    api: ApiModel
    services: Services
    settings: Settings
    store: Store
    runtime: NodeRuntime
    faults: FaultInjector
    clock: Clock
    addressing: str
    l4_proxy: str

    def available_versions(self) -> Mapping[str, Sequence[str]]: ...

    def advance_clock(self, seconds: float) -> Advanced: ...

    def reset(self, timeout: float = 30.0) -> int: ...


def _service(request: Request) -> Backend:
    service: Backend = request.app.state.service
    return service


class AwsErrorRoute(APIRoute):
    """A route whose service-layer refusals (ServiceError) answer as ApiError JSON, with the
    code, status and side the Query API would write for them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as err:
                return _error_response(request, err)

        return route


class BadRequestRoute(APIRoute):
    """A route whose malformed bodies answer 400 (as its own refusals do), not FastAPI's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as err:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                                     for e in err.errors())
                return JSONResponse({"detail": problems}, status_code=400)

        return route


def _error_response(request: Request, err: ServiceError) -> JSONResponse:
    api = _service(request).api
    try:
        code, status, side = err.resolve(api)
    except KeyError:  # an error name the model does not know: our bug, not the caller's
        log.exception("JSON API: unknown error %s", err.name)
        err = internal_failure("-")
        code, status, side = err.resolve(api)
    return JSONResponse(ApiError(code=code, message=err.message, type=side).model_dump(), status_code=status)


def _context(request: Request, account: str | None, region: str | None) -> RequestContext:
    service = _service(request)
    settings = service.settings
    return service.services.context(account or settings.default_account, region or settings.region)


def admin_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/health", response_model=Health, tags=["admin"])
    def health(request: Request) -> Health:
        service = _service(request)
        clusters = service.store.records(CacheCluster)
        nodes = [n for c in clusters for n in c.status.nodes]
        return Health(
            status="ok", runtime=service.runtime.name, addressing=service.addressing, l4_proxy=service.l4_proxy,
            cache_clusters=len(clusters), nodes=len(nodes),
            nodes_available=sum(1 for n in nodes if n.status == "available"),
            engines={k: list(v) for k, v in service.available_versions().items()},
        )

    def reset(request: Request) -> ResetResult:
        return ResetResult(status="ok", deleted=_service(request).reset())

    router.add_api_route("/api/v1/reset", reset, methods=["POST"], response_model=ResetResult, tags=["admin"],
                         summary="Delete every resource and stop every node")
    # moto's server mode path, so suites written for moto_server run against us unchanged.
    router.add_api_route("/moto-api/reset", reset, methods=["POST"], response_model=ResetResult,
                         tags=["admin"], summary="moto-compatible reset")

    @router.post("/api/v1/faults/node", response_model=FaultResult, tags=["faults"],
                 summary="Kill, stop, freeze (pause) or resume a cache node")
    def node_fault(request: Request, fault: NodeFault) -> FaultResult:
        try:
            message = _service(request).faults.node(fault.account, fault.region, fault.cluster_id, fault.node_id,
                                                    fault.action)
        except FaultError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
        return FaultResult(message=message, nodes=[f"{fault.cluster_id}/{fault.node_id}"])

    @router.post("/api/v1/faults/availability-zone", response_model=FaultResult, tags=["faults"],
                 summary="Interrupt an availability zone: every node placed in it goes down for a while")
    def az_fault(request: Request, fault: AzFault) -> FaultResult:
        try:
            nodes = _service(request).faults.interrupt_az(fault.availability_zone, fault.seconds)
        except FaultError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
        return FaultResult(message=f"{fault.availability_zone} interrupted for {fault.seconds:g} s", nodes=nodes)

    @router.delete("/api/v1/faults/availability-zone/{az}", response_model=FaultResult, tags=["faults"],
                   summary="End an availability-zone interruption now")
    def az_restore(request: Request, az: str) -> FaultResult:
        _service(request).faults.restore_az(az)
        return FaultResult(message=f"{az} restored")

    router.include_router(resource_router())
    router.include_router(clock_router())
    return router


def clock_router() -> APIRouter:
    """The service clock, and the time warp that lets windows fire now (reconciler.timewarp)."""
    router = APIRouter(route_class=BadRequestRoute, tags=["clock"])

    @router.get("/api/v1/clock", response_model=ClockState, summary="The service clock")
    def clock(request: Request) -> ClockState:
        service_clock = _service(request).clock
        return ClockState(now=service_clock.now(), offset_seconds=service_clock.offset().total_seconds())

    @router.post("/api/v1/clock/advance", response_model=ClockAdvanced,
                 # "4XX" rather than 400: it also keeps FastAPI from documenting a 422 never answered.
                 responses={"4XX": {"model": BadRequest, "description": "400: seconds missing, not a number, "
                                                                           "not above 0, or above 400 days"}},
                 summary="Move the clock forward, stopping at every maintenance and snapshot window start on the "
                         "way until the control loop is idle")
    def advance(request: Request, body: ClockAdvance) -> ClockAdvanced:
        try:
            done = _service(request).advance_clock(body.seconds)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return ClockAdvanced(
            now=done.now, offset_seconds=done.offset.total_seconds(),
            windows=[PassedWindow(resource=w.resource, window=w.window, start=w.start) for w in done.windows])

    return router


# Who is asking: the account and region whose resources are read (the service's defaults if not given).
_ACCOUNT = Query(default=None, description="Account id; the service's default account if not given")
_REGION = Query(default=None, description="Region; the service's default region if not given")
_Listing = TypeVar("_Listing", m.DescribeCacheClustersMessage, m.DescribeReplicationGroupsMessage,
                   m.DescribeEventsMessage)


@dataclass
class Page:
    """Which page of a listing: the Marker and MaxRecords of the Describe operation."""

    marker: str | None = Query(default=None, description="Where the previous page ended (its Marker)")
    max_records: int | None = Query(default=None, description="Page size, 20 to 100 (100 if not given)")

    def of(self, params: _Listing) -> _Listing:
        if self.marker is not None:
            params["Marker"] = self.marker
        if self.max_records is not None:
            params["MaxRecords"] = self.max_records
        return params


_Paging = Annotated[Page, Depends()]


def resource_router() -> APIRouter:
    """Resources, as DescribeCacheClusters, DescribeReplicationGroups and DescribeEvents answer."""
    router = APIRouter(route_class=AwsErrorRoute, tags=["resources"],
                       responses={400: {"model": ApiError}, 404: {"model": ApiError}})

    @router.get("/api/v1/cache-clusters", response_model=m.CacheClusterMessage,
                summary="Cache clusters, with their nodes (DescribeCacheClusters)")
    def cache_clusters(request: Request, page: _Paging, account: str | None = _ACCOUNT,
                       region: str | None = _REGION) -> m.CacheClusterMessage:
        params: m.DescribeCacheClustersMessage = {"ShowCacheNodeInfo": True}
        return describe_cache_clusters(_context(request, account, region), page.of(params))

    @router.get("/api/v1/cache-clusters/{cluster_id}", response_model=m.CacheCluster,
                summary="One cache cluster, with its nodes (DescribeCacheClusters)")
    def cache_cluster(request: Request, cluster_id: str, account: str | None = _ACCOUNT,
                      region: str | None = _REGION) -> m.CacheCluster:
        found = describe_cache_clusters(_context(request, account, region),
                                        {"CacheClusterId": cluster_id, "ShowCacheNodeInfo": True})
        return found["CacheClusters"][0]

    @router.get("/api/v1/replication-groups", response_model=m.ReplicationGroupMessage,
                summary="Replication groups (DescribeReplicationGroups)")
    def replication_groups(request: Request, page: _Paging, account: str | None = _ACCOUNT,
                           region: str | None = _REGION) -> m.ReplicationGroupMessage:
        params: m.DescribeReplicationGroupsMessage = {}
        return describe_replication_groups(_context(request, account, region), page.of(params))

    @router.get("/api/v1/replication-groups/{group_id}", response_model=m.ReplicationGroup,
                summary="One replication group (DescribeReplicationGroups)")
    def replication_group(request: Request, group_id: str, account: str | None = _ACCOUNT,
                          region: str | None = _REGION) -> m.ReplicationGroup:
        found = describe_replication_groups(_context(request, account, region), {"ReplicationGroupId": group_id})
        return found["ReplicationGroups"][0]

    @router.get("/api/v1/events", response_model=m.EventsMessage, summary="Events, newest last (DescribeEvents)")
    def events(request: Request, page: _Paging, account: str | None = _ACCOUNT, region: str | None = _REGION,
               minutes: int = Query(default=60, ge=1, le=20160)) -> m.EventsMessage:
        params: m.DescribeEventsMessage = {"Duration": minutes}
        return describe_events(_context(request, account, region), page.of(params))

    return router
