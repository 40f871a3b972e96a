"""Snapshots on the JSON API: the Query API's handlers behind resource-shaped routes; the answer
is the snapshot as DescribeSnapshots shows it (with its node snapshots)."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from controlplane.admin.base import ACCOUNT, ERRORS, REGION, AwsErrorRoute, Paging, context_for
from controlplane.admin.bodies import BodyModels, message, takes
from controlplane.handlers.snapshots import copy_snapshot, create_snapshot, delete_snapshot, describe_snapshots
from controlplane.model import messages as m


def snapshot_router(bodies: BodyModels) -> APIRouter:
    router = APIRouter(route_class=AwsErrorRoute, tags=["snapshots"], responses=ERRORS)
    create_body = bodies.of(m.CreateSnapshotMessage, "CreateSnapshot",
                       doc="CreateSnapshot's members, e.g. {\"SnapshotName\": \"before-upgrade\", "
                           "\"ReplicationGroupId\": \"rg\"} or {..., \"CacheClusterId\": \"web\"}")
    copy = bodies.of(m.CopySnapshotMessage, "CopySnapshot", without=("SourceSnapshotName",),
                     doc="CopySnapshot's members (the source is the path's), e.g. {\"TargetSnapshotName\": \"copy\"}")

    @router.get("/api/v1/snapshots", response_model=m.DescribeSnapshotsListMessage,
                summary="Snapshots (DescribeSnapshots), optionally of one cache or of one kind")
    def snapshots(request: Request, page: Paging,
                  cluster: str | None = Query(default=None, description="CacheClusterId"),
                  group: str | None = Query(default=None, description="ReplicationGroupId"),
                  source: str | None = Query(default=None, description="SnapshotSource: automated or manual"),
                  account: str | None = ACCOUNT, region: str | None = REGION) -> m.DescribeSnapshotsListMessage:
        params: m.DescribeSnapshotsMessage = {"ShowNodeGroupConfig": True}
        if cluster is not None:
            params["CacheClusterId"] = cluster
        if group is not None:
            params["ReplicationGroupId"] = group
        if source is not None:
            params["SnapshotSource"] = source
        return describe_snapshots(context_for(request, account, region), page.of(params))

    @router.get("/api/v1/snapshots/{name}", response_model=m.Snapshot, summary="One snapshot (DescribeSnapshots)")
    def snapshot(request: Request, name: str, account: str | None = ACCOUNT,
                 region: str | None = REGION) -> m.Snapshot:
        found = describe_snapshots(context_for(request, account, region),
                                   {"SnapshotName": name, "ShowNodeGroupConfig": True})
        return found.get("Snapshots", [])[0]

    @router.post("/api/v1/snapshots", response_model=m.Snapshot, status_code=201,
                 summary="Take a snapshot of a cache cluster or replication group (CreateSnapshot)")
    @takes(create_body)
    def create(request: Request, body: BaseModel, account: str | None = ACCOUNT,
               region: str | None = REGION) -> m.Snapshot:
        params = cast(m.CreateSnapshotMessage, message(body))
        return create_snapshot(context_for(request, account, region), params)["Snapshot"]

    @router.post("/api/v1/snapshots/{name}/copy", response_model=m.Snapshot, status_code=201,
                 summary="Copy a snapshot (CopySnapshot), or export it to a bucket (TargetBucket)")
    @takes(copy)
    def copy_(request: Request, name: str, body: BaseModel, account: str | None = ACCOUNT,
              region: str | None = REGION) -> m.Snapshot:
        params = cast(m.CopySnapshotMessage, message(body, SourceSnapshotName=name))
        return copy_snapshot(context_for(request, account, region), params)["Snapshot"]

    @router.delete("/api/v1/snapshots/{name}", response_model=m.Snapshot, summary="Delete a snapshot (DeleteSnapshot)")
    def delete(request: Request, name: str, account: str | None = ACCOUNT, region: str | None = REGION) -> m.Snapshot:
        return delete_snapshot(context_for(request, account, region), {"SnapshotName": name})["Snapshot"]

    return router
