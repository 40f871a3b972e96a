"""Cache clusters on the JSON API: the Query API's handlers behind resource-shaped routes.

Bodies carry AWS's member names (bodies.py); the answer is the cluster as DescribeCacheClusters
shows it. Endpoints are plain `def`: FastAPI runs them on worker threads (handlers write SQLite)."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from controlplane.admin.base import ACCOUNT, ERRORS, REGION, AwsErrorRoute, Paging, context_for
from controlplane.admin.bodies import BodyModels, message, takes
from controlplane.handlers.cache_cluster_changes import modify_cache_cluster
from controlplane.handlers.cache_clusters import (
    create_cache_cluster,
    delete_cache_cluster,
    describe_cache_clusters,
    reboot_cache_cluster,
)
from controlplane.model import messages as m


def cluster_router(bodies: BodyModels) -> APIRouter:
    router = APIRouter(route_class=AwsErrorRoute, tags=["cache clusters"], responses=ERRORS)
    create = bodies.of(m.CreateCacheClusterMessage, "CreateCacheCluster",
                       doc="CreateCacheCluster's members, e.g. {\"CacheClusterId\": \"web\", \"Engine\": \"redis\", "
                           "\"CacheNodeType\": \"cache.t3.micro\"}")
    modify = bodies.of(m.ModifyCacheClusterMessage, "ModifyCacheCluster", without=("CacheClusterId",),
                       doc="ModifyCacheCluster's members (the cluster is the path's), e.g. {\"NumCacheNodes\": 3, "
                           "\"ApplyImmediately\": true}")
    reboot = bodies.of(m.RebootCacheClusterMessage, "RebootCacheCluster", without=("CacheClusterId",),
                       doc="RebootCacheCluster's members; no body (or no CacheNodeIdsToReboot): every node")

    @router.get("/api/v1/cache-clusters", response_model=m.CacheClusterMessage,
                summary="Cache clusters, with their nodes (DescribeCacheClusters)")
    def cache_clusters(request: Request, page: Paging, account: str | None = ACCOUNT,
                       region: str | None = REGION) -> m.CacheClusterMessage:
        params: m.DescribeCacheClustersMessage = {"ShowCacheNodeInfo": True}
        return describe_cache_clusters(context_for(request, account, region), page.of(params))

    @router.get("/api/v1/cache-clusters/{cluster_id}", response_model=m.CacheCluster,
                summary="One cache cluster, with its nodes (DescribeCacheClusters)")
    def cache_cluster(request: Request, cluster_id: str, account: str | None = ACCOUNT,
                      region: str | None = REGION) -> m.CacheCluster:
        found = describe_cache_clusters(context_for(request, account, region),
                                        {"CacheClusterId": cluster_id, "ShowCacheNodeInfo": True})
        return found["CacheClusters"][0]

    @router.post("/api/v1/cache-clusters", response_model=m.CacheCluster, status_code=201,
                 summary="Create a cache cluster (CreateCacheCluster): it is `creating` until its nodes serve")
    @takes(create)
    def create_cluster(request: Request, body: BaseModel, account: str | None = ACCOUNT,
                       region: str | None = REGION) -> m.CacheCluster:
        params = cast(m.CreateCacheClusterMessage, message(body))
        return create_cache_cluster(context_for(request, account, region), params)["CacheCluster"]

    def modify_cluster(request: Request, cluster_id: str, body: BaseModel, account: str | None = ACCOUNT,
                       region: str | None = REGION) -> m.CacheCluster:
        params = cast(m.ModifyCacheClusterMessage, message(body, CacheClusterId=cluster_id))
        return modify_cache_cluster(context_for(request, account, region), params)["CacheCluster"]

    takes(modify)(modify_cluster)
    for method, path in (("PATCH", "/api/v1/cache-clusters/{cluster_id}"),
                         ("POST", "/api/v1/cache-clusters/{cluster_id}/modify")):  # forms cannot PATCH
        router.add_api_route(path, modify_cluster, methods=[method], response_model=m.CacheCluster,
                             name=f"modify_cluster_{method.lower()}",
                             summary="Modify a cache cluster (ModifyCacheCluster)")

    @router.delete("/api/v1/cache-clusters/{cluster_id}", response_model=m.CacheCluster,
                   summary="Delete a cache cluster (DeleteCacheCluster), with a final snapshot if named")
    def delete_cluster(request: Request, cluster_id: str,
                       final_snapshot: str | None = Query(default=None, description="FinalSnapshotIdentifier"),
                       account: str | None = ACCOUNT, region: str | None = REGION) -> m.CacheCluster:
        params: m.DeleteCacheClusterMessage = {"CacheClusterId": cluster_id}
        if final_snapshot is not None:
            params["FinalSnapshotIdentifier"] = final_snapshot
        return delete_cache_cluster(context_for(request, account, region), params)["CacheCluster"]

    @router.post("/api/v1/cache-clusters/{cluster_id}/reboot", response_model=m.CacheCluster,
                 summary="Reboot nodes of a cache cluster (RebootCacheCluster); every node if none are named")
    @takes(reboot, optional=True)
    def reboot_cluster(request: Request, cluster_id: str, body: BaseModel | None = None,
                       account: str | None = ACCOUNT, region: str | None = REGION) -> m.CacheCluster:
        context = context_for(request, account, region)
        given = dict(message(body))
        if "CacheNodeIdsToReboot" not in given:
            shown = describe_cache_clusters(context, {"CacheClusterId": cluster_id, "ShowCacheNodeInfo": True})
            given["CacheNodeIdsToReboot"] = [n["CacheNodeId"] for n in shown["CacheClusters"][0].get("CacheNodes", [])
                                             if "CacheNodeId" in n]
        params = cast(m.RebootCacheClusterMessage, {**given, "CacheClusterId": cluster_id})
        return reboot_cache_cluster(context, params)["CacheCluster"]

    return router
