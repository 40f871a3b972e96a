"""Replication groups on the JSON API: the Query API's handlers behind resource-shaped routes.
The answer is the group as DescribeReplicationGroups shows it (node groups and members)."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from controlplane.admin.base import ACCOUNT, ERRORS, REGION, AwsErrorRoute, Paging, context_for
from controlplane.admin.bodies import BodyModels, message, takes
from controlplane.handlers.replicas import decrease_replica_count, increase_replica_count, test_failover
from controlplane.handlers.replication_groups import (
    create_replication_group,
    delete_replication_group,
    describe_replication_groups,
    modify_replication_group,
)
from controlplane.model import messages as m

# Cluster mode disabled: a group has one node group.
NODE_GROUP = "0001"


def group_router(bodies: BodyModels) -> APIRouter:
    router = APIRouter(route_class=AwsErrorRoute, tags=["replication groups"], responses=ERRORS)
    create = bodies.of(m.CreateReplicationGroupMessage, "CreateReplicationGroup",
                       doc="CreateReplicationGroup's members, e.g. {\"ReplicationGroupId\": \"rg\", "
                           "\"ReplicationGroupDescription\": \"sessions\", \"Engine\": \"redis\", \"CacheNodeType\": "
                           "\"cache.t3.micro\", \"NumCacheClusters\": 2, \"AutomaticFailoverEnabled\": true}")
    modify = bodies.of(m.ModifyReplicationGroupMessage, "ModifyReplicationGroup", without=("ReplicationGroupId",),
                       doc="ModifyReplicationGroup's members (the group is the path's)")
    failover = bodies.of(m.TestFailoverMessage, "TestFailover", without=("ReplicationGroupId",),
                         doc="TestFailover's members; no body (or no NodeGroupId): node group 0001")
    increase = bodies.of(m.IncreaseReplicaCountMessage, "IncreaseReplicaCount", without=("ReplicationGroupId",),
                         doc="IncreaseReplicaCount's members, e.g. {\"NewReplicaCount\": 2, "
                             "\"ApplyImmediately\": true}")
    decrease = bodies.of(m.DecreaseReplicaCountMessage, "DecreaseReplicaCount", without=("ReplicationGroupId",),
                         doc="DecreaseReplicaCount's members, e.g. {\"NewReplicaCount\": 1, \"ApplyImmediately\": "
                             "true} or {\"ReplicasToRemove\": [\"rg-003\"], \"ApplyImmediately\": true}")

    @router.get("/api/v1/replication-groups", response_model=m.ReplicationGroupMessage,
                summary="Replication groups (DescribeReplicationGroups)")
    def replication_groups(request: Request, page: Paging, account: str | None = ACCOUNT,
                           region: str | None = REGION) -> m.ReplicationGroupMessage:
        params: m.DescribeReplicationGroupsMessage = {}
        return describe_replication_groups(context_for(request, account, region), page.of(params))

    @router.get("/api/v1/replication-groups/{group_id}", response_model=m.ReplicationGroup,
                summary="One replication group (DescribeReplicationGroups)")
    def replication_group(request: Request, group_id: str, account: str | None = ACCOUNT,
                          region: str | None = REGION) -> m.ReplicationGroup:
        found = describe_replication_groups(context_for(request, account, region), {"ReplicationGroupId": group_id})
        return found["ReplicationGroups"][0]

    @router.post("/api/v1/replication-groups", response_model=m.ReplicationGroup, status_code=201,
                 summary="Create a replication group (CreateReplicationGroup)")
    @takes(create)
    def create_group(request: Request, body: BaseModel, account: str | None = ACCOUNT,
                     region: str | None = REGION) -> m.ReplicationGroup:
        params = cast(m.CreateReplicationGroupMessage, message(body))
        return create_replication_group(context_for(request, account, region), params)["ReplicationGroup"]

    def modify_group(request: Request, group_id: str, body: BaseModel, account: str | None = ACCOUNT,
                     region: str | None = REGION) -> m.ReplicationGroup:
        params = cast(m.ModifyReplicationGroupMessage, message(body, ReplicationGroupId=group_id))
        return modify_replication_group(context_for(request, account, region), params)["ReplicationGroup"]

    takes(modify)(modify_group)
    for method, path in (("PATCH", "/api/v1/replication-groups/{group_id}"),
                         ("POST", "/api/v1/replication-groups/{group_id}/modify")):  # forms cannot PATCH
        router.add_api_route(path, modify_group, methods=[method], response_model=m.ReplicationGroup,
                             name=f"modify_group_{method.lower()}",
                             summary="Modify a replication group (ModifyReplicationGroup)")

    @router.delete("/api/v1/replication-groups/{group_id}", response_model=m.ReplicationGroup,
                   summary="Delete a replication group (DeleteReplicationGroup)")
    def delete_group(request: Request, group_id: str,
                     final_snapshot: str | None = Query(default=None, description="FinalSnapshotIdentifier"),
                     retain_primary_cluster: bool | None = Query(default=None, description="RetainPrimaryCluster"),
                     account: str | None = ACCOUNT, region: str | None = REGION) -> m.ReplicationGroup:
        params: m.DeleteReplicationGroupMessage = {"ReplicationGroupId": group_id}
        if final_snapshot is not None:
            params["FinalSnapshotIdentifier"] = final_snapshot
        if retain_primary_cluster is not None:
            params["RetainPrimaryCluster"] = retain_primary_cluster
        return delete_replication_group(context_for(request, account, region), params)["ReplicationGroup"]

    @router.post("/api/v1/replication-groups/{group_id}/test-failover", response_model=m.ReplicationGroup,
                 summary="Fail the primary over to a replica (TestFailover)")
    @takes(failover, optional=True)
    def failover_group(request: Request, group_id: str, body: BaseModel | None = None,
                       account: str | None = ACCOUNT, region: str | None = REGION) -> m.ReplicationGroup:
        params = cast(m.TestFailoverMessage, {"NodeGroupId": NODE_GROUP,
                                              **message(body, ReplicationGroupId=group_id)})
        return test_failover(context_for(request, account, region), params)["ReplicationGroup"]

    @router.post("/api/v1/replication-groups/{group_id}/increase-replica-count", response_model=m.ReplicationGroup,
                 summary="Add replicas (IncreaseReplicaCount)")
    @takes(increase)
    def increase_replicas(request: Request, group_id: str, body: BaseModel, account: str | None = ACCOUNT,
                          region: str | None = REGION) -> m.ReplicationGroup:
        params = cast(m.IncreaseReplicaCountMessage, message(body, ReplicationGroupId=group_id))
        return increase_replica_count(context_for(request, account, region), params)["ReplicationGroup"]

    @router.post("/api/v1/replication-groups/{group_id}/decrease-replica-count", response_model=m.ReplicationGroup,
                 summary="Remove replicas (DecreaseReplicaCount)")
    @takes(decrease)
    def decrease_replicas(request: Request, group_id: str, body: BaseModel, account: str | None = ACCOUNT,
                          region: str | None = REGION) -> m.ReplicationGroup:
        params = cast(m.DecreaseReplicaCountMessage, message(body, ReplicationGroupId=group_id))
        return decrease_replica_count(context_for(request, account, region), params)["ReplicationGroup"]

    return router
