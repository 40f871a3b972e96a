"""The JSON REST API under /api/v1 (plus moto's reset path), for scripts and the dashboard.

Resources are read and changed through the same service layer as the Query API
(controlplane.handlers), so every rule lives once: the answers are the AWS shapes
(controlplane.model.messages) as JSON, and a refusal is the AWS error (code, HTTP status,
Sender/Receiver) from the same exception classes (base.py). One module per resource: clusters,
groups, snapshots, nodes; the live feed in stream.py. Admin actions that AWS does not have (health,
faults, clock, reset) are here.

Endpoints are plain `def`: FastAPI runs them on worker threads, so the blocking ones (reset
stops nodes) never hold the event loop."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from controlplane.admin.base import (
    ACCOUNT,
    ERRORS,
    REGION,
    AwsErrorRoute,
    BadRequestRoute,
    Paging,
    context_for,
    service_of,
)
from controlplane.admin.bodies import BodyModels
from controlplane.admin.clusters import cluster_router
from controlplane.admin.groups import group_router
from controlplane.admin.nodes import node_router
from controlplane.admin.snapshots import snapshot_router
from controlplane.admin.stream import stream_router
from controlplane.handlers.events import describe_events
from controlplane.model import messages as m
from controlplane.reconciler.timewarp import MAX_ADVANCE
from controlplane.state.records import CacheCluster

PEM = "application/x-pem-file"

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


def admin_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/health", response_model=Health, tags=["admin"])
    def health(request: Request) -> Health:
        service = service_of(request)
        clusters = service.store.records(CacheCluster)
        nodes = [n for c in clusters for n in c.status.nodes]
        return Health(
            status="ok", runtime=service.runtime.name, addressing=service.addressing, l4_proxy=service.l4_proxy,
            cache_clusters=len(clusters), nodes=len(nodes),
            nodes_available=sum(1 for n in nodes if n.status == "available"),
            engines={k: list(v) for k, v in service.available_versions().items()},
        )

    @router.get("/api/v1/ca.pem", response_class=Response, tags=["admin"],
                responses={200: {"content": {PEM: {}}, "description": "The CA certificate (PEM)"}},
                summary="The certificate of the CA that signs every node's TLS certificate: what clients trust "
                        "(redis-cli --tls --cacert ca.pem, redis-py ssl_ca_certs=)")
    def ca_pem(request: Request) -> Response:
        pem = service_of(request).ca_pem()
        if pem is None:
            raise HTTPException(status_code=404, detail="this service has no CA")
        return Response(content=pem, media_type=PEM)

    def reset(request: Request) -> ResetResult:
        return ResetResult(status="ok", deleted=service_of(request).reset())

    router.add_api_route("/api/v1/reset", reset, methods=["POST"], response_model=ResetResult, tags=["admin"],
                         summary="Delete every resource and stop every node")
    # moto's server mode path, so suites written for moto_server run against us unchanged.
    router.add_api_route("/moto-api/reset", reset, methods=["POST"], response_model=ResetResult,
                         tags=["admin"], summary="moto-compatible reset")

    router.include_router(fault_router())
    bodies = BodyModels()
    for part in (cluster_router(bodies), group_router(bodies), node_router(), snapshot_router(bodies),
                 event_router(), stream_router(), clock_router()):
        router.include_router(part)
    return router


def fault_router() -> APIRouter:
    """Fault injection; refusals answer as the resource routes do (AWS's codes and statuses)."""
    router = APIRouter(route_class=AwsErrorRoute, tags=["faults"], responses=ERRORS)

    @router.post("/api/v1/faults/node", response_model=FaultResult,
                 summary="Kill, stop, freeze (pause) or resume a cache node")
    def node_fault(request: Request, fault: NodeFault) -> FaultResult:
        message = service_of(request).faults.node(fault.account, fault.region, fault.cluster_id, fault.node_id,
                                                fault.action)
        return FaultResult(message=message, nodes=[f"{fault.cluster_id}/{fault.node_id}"])

    @router.post("/api/v1/faults/availability-zone", response_model=FaultResult,
                 summary="Interrupt an availability zone: every node placed in it goes down for a while")
    def az_fault(request: Request, fault: AzFault) -> FaultResult:
        nodes = service_of(request).faults.interrupt_az(fault.availability_zone, fault.seconds)
        return FaultResult(message=f"{fault.availability_zone} interrupted for {fault.seconds:g} s", nodes=nodes)

    @router.delete("/api/v1/faults/availability-zone/{az}", response_model=FaultResult,
                   summary="End an availability-zone interruption now")
    def az_restore(request: Request, az: str) -> FaultResult:
        service_of(request).faults.restore_az(az)
        return FaultResult(message=f"{az} restored")

    return router


def clock_router() -> APIRouter:
    """The service clock, and the time warp that lets windows fire now (reconciler.timewarp)."""
    router = APIRouter(route_class=BadRequestRoute, tags=["clock"])

    @router.get("/api/v1/clock", response_model=ClockState, summary="The service clock")
    def clock(request: Request) -> ClockState:
        service_clock = service_of(request).clock
        return ClockState(now=service_clock.now(), offset_seconds=service_clock.offset().total_seconds())

    @router.post("/api/v1/clock/advance", response_model=ClockAdvanced,
                 # "4XX" rather than 400: it also keeps FastAPI from documenting a 422 never answered.
                 responses={"4XX": {"model": BadRequest, "description": "400: seconds missing, not a number, "
                                                                           "not above 0, or above 400 days"}},
                 summary="Move the clock forward, stopping at every maintenance and snapshot window start on the "
                         "way until the control loop is idle")
    def advance(request: Request, body: ClockAdvance) -> ClockAdvanced:
        try:
            done = service_of(request).advance_clock(body.seconds)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return ClockAdvanced(
            now=done.now, offset_seconds=done.offset.total_seconds(),
            windows=[PassedWindow(resource=w.resource, window=w.window, start=w.start) for w in done.windows])

    return router


def event_router() -> APIRouter:
    router = APIRouter(route_class=AwsErrorRoute, tags=["events"], responses=ERRORS)

    @router.get("/api/v1/events", response_model=m.EventsMessage, summary="Events, newest last (DescribeEvents)")
    def events(request: Request, page: Paging, account: str | None = ACCOUNT, region: str | None = REGION,
               minutes: int = Query(default=60, ge=1, le=20160)) -> m.EventsMessage:
        params: m.DescribeEventsMessage = {"Duration": minutes}
        return describe_events(context_for(request, account, region), page.of(params))

    return router
