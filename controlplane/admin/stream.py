"""GET /api/v1/stream: the live feed as server-sent events (feed.py says what, broadcast.py how)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from controlplane.admin.base import service_of

DESCRIPTION = """Server-sent events (text/event-stream) of every change, so pages and scripts update without polling:

- `event: resource` data `{"kind", "account", "region", "id", "status"}`: a record was written or deleted;
  `status` is what the API shows (`creating`, `available`, ...), null once deleted. `kind`: cache-cluster,
  replication-group, snapshot, service-update, update-action.
- `event: event` data `{"account", "region", "source_type", "source_id", "message", "date"}`: what DescribeEvents
  lists, as it happens.
- `event: node` data `{"account", "region", "node", "cache_cluster_id", "node_id", "replication_group_id",
  "healthy", "role"}`: the health monitor's news of a node (first answer, down, up, a new role: primary, replica,
  or null for memcached).
- `event: gap` data `{"missed": n}`: this client fell behind and lost n messages; read the resources afresh.

Each message but `gap` has an `id:` (one sequence for the feed); a `: keepalive` comment comes every 15 s of
silence. `Last-Event-ID` is ignored: nothing is replayed after a reconnect."""


def stream_router() -> APIRouter:
    router = APIRouter(tags=["live feed"])

    @router.get("/api/v1/stream", response_class=StreamingResponse, summary="The live feed (server-sent events)",
                description=DESCRIPTION,
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                                 "description": "An endless stream of events"}})
    async def stream(request: Request,
                     account: str | None = Query(default=None, description="Only this account's messages"),
                     region: str | None = Query(default=None, description="Only this region's messages"),
                     ) -> StreamingResponse:
        frames = service_of(request).feed.frames(account, region)
        # no-cache and no proxy buffering: each message must reach the page as it is sent.
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
