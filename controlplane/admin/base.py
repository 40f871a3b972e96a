"""What every route module of the JSON API shares: the running service it answers from
(`Backend`), the request context, and the route classes that turn refusals into JSON.

Refusals of the service layer (ServiceError) answer as `ApiError` with the code, HTTP status and
side the Query API would write for them; a body or parameter that does not fit its model answers
400 in the same shape (MissingParameter for a missing member, InvalidParameterValue otherwise),
never FastAPI's 422."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from controlplane.admin.faults import FaultInjector
from controlplane.clock import Clock
from controlplane.handlers.context import RequestContext, Services
from controlplane.model import messages as m
from controlplane.model.errors import InvalidParameterValueException
from controlplane.protocol.errors import ServiceError, internal_failure, missing_parameter
from controlplane.protocol.model import ApiModel
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.timewarp import Advanced
from controlplane.settings import Settings
from controlplane.state.store import Store
from engine import NodeRuntime

if TYPE_CHECKING:
    from controlplane.admin.broadcast import Broadcaster
    from controlplane.admin.nodes import NodeStats

log = logging.getLogger("elasticache_local.api")


class ApiError(BaseModel):
    """A refusal of the service layer: the AWS error code (e.g. CacheClusterNotFound), its message,
    and who is to blame (Sender or Receiver). The HTTP status is the one AWS answers with."""

    code: str
    message: str
    type: str


class Backend(Protocol):
    """What the JSON API needs of the running service (controlplane.service.Service is one); a
    protocol, so this face does not depend on the assembly above it."""

    api: ApiModel
    services: Services
    settings: Settings
    store: Store
    runtime: NodeRuntime
    health: HealthMonitor
    faults: FaultInjector
    clock: Clock
    feed: Broadcaster
    node_stats: NodeStats
    addressing: str
    l4_proxy: str

    def available_versions(self) -> Mapping[str, Sequence[str]]: ...

    def ca_pem(self) -> bytes | None: ...

    def advance_clock(self, seconds: float) -> Advanced: ...

    def reset(self, timeout: float = 30.0) -> int: ...


def service_of(request: Request) -> Backend:
    service: Backend = request.app.state.service
    return service


def context_for(request: Request, account: str | None, region: str | None) -> RequestContext:
    service = service_of(request)
    settings = service.settings
    return service.services.context(account or settings.default_account, region or settings.region)


def error_response(request: Request, err: ServiceError) -> JSONResponse:
    api = service_of(request).api
    try:
        code, status, side = err.resolve(api)
    except KeyError:  # an error name the model does not know: our bug, not the caller's
        log.exception("JSON API: unknown error %s", err.name)
        err = internal_failure("-")
        code, status, side = err.resolve(api)
    return JSONResponse(ApiError(code=code, message=err.message, type=side).model_dump(), status_code=status)


def _problems(err: RequestValidationError) -> tuple[bool, str]:
    """(only members are missing, what is wrong) of a request that does not fit its model."""
    errors = err.errors()
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
    return all(e["type"] == "missing" and len(e["loc"]) > 1 for e in errors), text


class BadRequestRoute(APIRoute):
    """A route whose malformed bodies answer 400 {"detail": ...} (as its own refusals do), not 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as err:
                return JSONResponse({"detail": _problems(err)[1]}, status_code=400)

        return route


class AwsErrorRoute(APIRoute):
    """A resource route: service-layer refusals answer as ApiError JSON with the code, status and
    side the Query API would write; a request that does not fit its model answers 400 ApiError."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as err:
                return error_response(request, err)
            except RequestValidationError as err:
                missing, text = _problems(err)
                refusal = missing_parameter(text) if missing else InvalidParameterValueException(text)
                return error_response(request, refusal)

        return route


# What a resource route answers besides success (FastAPI documents a 422 otherwise, never answered).
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ApiError, "description": "The AWS error (code, message, Sender) with AWS's HTTP status; "
                                              "a body or parameter that does not fit: 400 MissingParameter or "
                                              "InvalidParameterValue"}}

# Who is asking: the account and region whose resources are read (the service's defaults if not given).
ACCOUNT = Query(default=None, description="Account id; the service's default account if not given")
REGION = Query(default=None, description="Region; the service's default region if not given")
_Listing = TypeVar("_Listing", m.DescribeCacheClustersMessage, m.DescribeReplicationGroupsMessage,
                   m.DescribeEventsMessage, m.DescribeSnapshotsMessage)


@dataclass
class Page:
    """Which page of a listing: the Marker and MaxRecords of the Describe operation."""

    marker: str | None = Query(default=None, description="Where the previous page ended (its Marker)")
    max_records: int | None = Query(default=None, description="Page size (the operation's limits apply)")

    def of(self, params: _Listing) -> _Listing:
        if self.marker is not None:
            params["Marker"] = self.marker
        if self.max_records is not None:
            params["MaxRecords"] = self.max_records
        return params


Paging = Annotated[Page, Depends()]
