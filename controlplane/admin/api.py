"""The JSON REST API under /api/v1 (plus moto's reset path), for scripts and the dashboard.

Endpoints are plain `def`: FastAPI runs them on worker threads, so the blocking ones (reset
stops nodes) never hold the event loop."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from controlplane.admin.faults import FaultError
from controlplane.state.records import CacheCluster

if TYPE_CHECKING:
    from controlplane.service import Service


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


class NodeView(BaseModel):
    node_id: str
    status: str
    address: str
    port: int
    availability_zone: str
    version: str | None


class CacheClusterView(BaseModel):
    account: str
    region: str
    id: str
    status: str
    engine: str
    engine_version: str
    node_type: str
    nodes: list[NodeView]
    configuration_endpoint: str | None


class EventView(BaseModel):
    account: str
    region: str
    source_type: str
    source_id: str
    message: str
    date: datetime


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


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _cluster_view(rec: CacheCluster) -> CacheClusterView:
    cfg = rec.status.config_host
    return CacheClusterView(
        account=rec.account, region=rec.region, id=rec.id, status=rec.api_status(),
        engine=rec.spec.engine, engine_version=rec.status.engine_version or rec.spec.engine_version,
        node_type=rec.spec.node_type,
        nodes=[NodeView(node_id=n.node_id, status=n.status, address=n.host, port=n.port,
                        availability_zone=n.az, version=n.version) for n in rec.status.nodes],
        configuration_endpoint=f"{cfg}:{rec.status.config_port}" if cfg else None,
    )


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

    @router.get("/api/v1/cache-clusters", response_model=list[CacheClusterView], tags=["resources"])
    def cache_clusters(request: Request) -> list[CacheClusterView]:
        return [_cluster_view(r) for r in _service(request).store.records(CacheCluster)]

    @router.get("/api/v1/events", response_model=list[EventView], tags=["resources"])
    def events(request: Request, account: str = Query(default="123456789012"),
               region: str = Query(default="us-east-1"), minutes: int = Query(default=60, ge=1, le=20160)
               ) -> list[EventView]:
        service = _service(request)
        now = service.clock.now()
        return [EventView(**e.model_dump()) for e in
                service.store.events(account, region, now - timedelta(minutes=minutes), now)]

    return router
