"""The JSON API's write routes: each goes through the Query API's handler (same rules, same
errors as JSON), and the bodies are AWS's members, checked strictly (a stray or mistyped member is
a 400 in the AWS error shape, never a 422 or a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controlplane.admin.api import admin_router
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_snapshots import settle

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
GROUP = {"ReplicationGroupDescription": "d", **REDIS}


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.service = world.service
    app.include_router(admin_router())
    with TestClient(app) as c:
        yield c


def _status(world: World, cluster_id: str) -> str:
    return world.call("DescribeCacheClusters", CacheClusterId=cluster_id)["CacheClusters"][0]["CacheClusterStatus"]


def _same_error(reply: Any, world: World, operation: str, **params: Any) -> None:
    """The JSON API's refusal is the Query API's: code, status, message."""
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert reply.status_code == err.value.status, reply.text
    assert reply.json() == {"code": err.value.code, "message": err.value.message, "type": "Sender"}


def test_create_modify_reboot_and_delete_a_cluster(world: World, client: TestClient) -> None:
    reply = client.post("/api/v1/cache-clusters", json={"CacheClusterId": "web", "NumCacheNodes": 1, **REDIS,
                                                        "Tags": [{"Key": "team", "Value": "a"}]})
    assert reply.status_code == 201, reply.text
    assert reply.json()["CacheClusterStatus"] == "creating" and reply.json()["CacheClusterId"] == "web"
    world.settle()
    assert _status(world, "web") == "available"
    tags = world.call("ListTagsForResource", ResourceName=reply.json()["ARN"])["TagList"]
    assert tags == [{"Key": "team", "Value": "a"}]

    modified = client.patch("/api/v1/cache-clusters/web", json={"SnapshotRetentionLimit": 3,
                                                                 "ApplyImmediately": True})
    assert modified.status_code == 200, modified.text
    assert modified.json()["SnapshotRetentionLimit"] == 3
    world.settle()
    again = client.post("/api/v1/cache-clusters/web/modify", json={"SnapshotRetentionLimit": 2})
    assert again.status_code == 200 and again.json()["SnapshotRetentionLimit"] == 2
    world.settle()

    rebooted = client.post("/api/v1/cache-clusters/web/reboot")  # no body: every node
    assert rebooted.status_code == 200, rebooted.text
    assert rebooted.json()["CacheClusterStatus"] == "rebooting cache cluster nodes"
    world.settle()
    assert _status(world, "web") == "available"
    assert "Cache node 0001 restarted" in world.events("web")
    named = client.post("/api/v1/cache-clusters/web/reboot", json={"CacheNodeIdsToReboot": ["0001"]})
    assert named.status_code == 200
    world.settle()

    deleted = client.delete("/api/v1/cache-clusters/web")
    assert deleted.status_code == 200 and deleted.json()["CacheClusterStatus"] == "deleting"
    world.settle()
    assert client.get("/api/v1/cache-clusters/web").json()["code"] == "CacheClusterNotFound"


def test_a_delete_with_a_final_snapshot(world: World, client: TestClient) -> None:
    client.post("/api/v1/cache-clusters", json={"CacheClusterId": "web", **REDIS})
    settle(world, lambda: _status(world, "web") == "available")
    reply = client.delete("/api/v1/cache-clusters/web", params={"final_snapshot": "last"})
    assert reply.status_code == 200, reply.text
    settle(world, lambda: not world.service.store.resource_keys()
           or client.get("/api/v1/cache-clusters/web").status_code == 404)
    snap = client.get("/api/v1/snapshots/last").json()
    assert snap["SnapshotName"] == "last" and snap["CacheClusterId"] == "web"


def test_cluster_refusals_are_the_aws_errors(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    _same_error(client.post("/api/v1/cache-clusters", json={"CacheClusterId": "web", **REDIS}),
                world, "CreateCacheCluster", CacheClusterId="web", **REDIS)
    _same_error(client.post("/api/v1/cache-clusters", json={"CacheClusterId": "x", "Engine": "redis",
                                                            "CacheNodeType": "cache.nope"}),
                world, "CreateCacheCluster", CacheClusterId="x", Engine="redis", CacheNodeType="cache.nope")
    _same_error(client.patch("/api/v1/cache-clusters/nope", json={"NumCacheNodes": 2}),
                world, "ModifyCacheCluster", CacheClusterId="nope", NumCacheNodes=2)
    _same_error(client.patch("/api/v1/cache-clusters/web", json={"NumCacheNodes": 2}),  # still creating
                world, "ModifyCacheCluster", CacheClusterId="web", NumCacheNodes=2)
    _same_error(client.delete("/api/v1/cache-clusters/nope"), world, "DeleteCacheCluster", CacheClusterId="nope")
    _same_error(client.post("/api/v1/cache-clusters/nope/reboot"),
                world, "DescribeCacheClusters", CacheClusterId="nope")
    _same_error(client.post("/api/v1/cache-clusters/web/reboot", json={"CacheNodeIdsToReboot": ["0001"]}),
                world, "RebootCacheCluster", CacheClusterId="web", CacheNodeIdsToReboot=["0001"])


@pytest.mark.parametrize(("body", "code"), [
    ({"Engine": "redis"}, "MissingParameter"),  # CacheClusterId
    ({"CacheClusterId": "web", "Engin": "redis"}, "InvalidParameterValue"),  # a misspelt member
    ({"CacheClusterId": "web", "NumCacheNodes": "2"}, "InvalidParameterValue"),  # a string for a number
    ({"CacheClusterId": "web", "Tags": [{"Key": "a", "Vale": "b"}]}, "InvalidParameterValue"),  # nested, misspelt
    ({"CacheClusterId": "web", "AZMode": "everywhere"}, "InvalidParameterValue"),  # not one of the enum's
    ({"CacheClusterId": None}, "InvalidParameterValue"),
    (["web"], "InvalidParameterValue"),
])
def test_bodies_that_do_not_fit_are_400_aws_errors(world: World, client: TestClient, body: Any, code: str) -> None:
    reply = client.post("/api/v1/cache-clusters", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == code and reply.json()["type"] == "Sender" and reply.json()["message"]
    assert world.service.store.resource_keys() == []


def test_bodies_that_are_not_json_are_400(world: World, client: TestClient) -> None:
    for content in (b"not json", b""):
        reply = client.post("/api/v1/cache-clusters", content=content, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] in ("InvalidParameterValue", "MissingParameter")
    assert client.patch("/api/v1/cache-clusters/web", json={"ApplyImmediately": "yes"}).status_code == 400
    assert client.post("/api/v1/cache-clusters/web/reboot", json={"CacheNodeIdsToReboot": "0001"}).status_code == 400


def test_create_modify_fail_over_and_delete_a_group(world: World, client: TestClient) -> None:
    reply = client.post("/api/v1/replication-groups", json={"ReplicationGroupId": "rg", "NumCacheClusters": 2,
                                                            "AutomaticFailoverEnabled": True, **GROUP})
    assert reply.status_code == 201, reply.text
    assert reply.json()["Status"] == "creating" and reply.json()["MemberClusters"] == ["rg-001", "rg-002"]
    world.settle()
    modified = client.patch("/api/v1/replication-groups/rg", json={"ReplicationGroupDescription": "sessions",
                                                                    "ApplyImmediately": True})
    assert modified.status_code == 200, modified.text
    assert modified.json()["Description"] == "sessions"
    world.settle()
    assert client.post("/api/v1/replication-groups/rg/modify", json={"SnapshotRetentionLimit": 1}).status_code == 200
    world.settle()

    failover = client.post("/api/v1/replication-groups/rg/test-failover")  # node group 0001
    assert failover.status_code == 200, failover.text
    assert failover.json()["Status"] == "available"
    _same_error(client.post("/api/v1/replication-groups/rg/test-failover", json={"NodeGroupId": "0001"}),
                world, "TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")  # already in progress
    world.settle()
    members = client.get("/api/v1/replication-groups/rg").json()["NodeGroups"][0]["NodeGroupMembers"]
    assert {m["CacheClusterId"]: m["CurrentRole"] for m in members} == {"rg-001": "replica", "rg-002": "primary"}
    _same_error(client.post("/api/v1/replication-groups/rg/test-failover", json={"NodeGroupId": "0002"}),
                world, "TestFailover", ReplicationGroupId="rg", NodeGroupId="0002")

    grown = client.post("/api/v1/replication-groups/rg/increase-replica-count",
                        json={"NewReplicaCount": 2, "ApplyImmediately": True})
    assert grown.status_code == 200 and grown.json()["Status"] == "modifying", grown.text
    world.settle()
    assert client.get("/api/v1/replication-groups/rg").json()["MemberClusters"] == ["rg-001", "rg-002", "rg-003"]
    shrunk = client.post("/api/v1/replication-groups/rg/decrease-replica-count",
                         json={"ReplicasToRemove": ["rg-003"], "ApplyImmediately": True})
    assert shrunk.status_code == 200 and shrunk.json()["Status"] == "modifying", shrunk.text
    world.settle()
    assert client.get("/api/v1/replication-groups/rg").json()["MemberClusters"] == ["rg-001", "rg-002"]
    _same_error(client.post("/api/v1/replication-groups/rg/decrease-replica-count",
                            json={"NewReplicaCount": 0, "ApplyImmediately": True}),
                world, "DecreaseReplicaCount", ReplicationGroupId="rg", NewReplicaCount=0, ApplyImmediately=True)
    bad = client.post("/api/v1/replication-groups/rg/increase-replica-count", json={"NewReplicaCount": "two"})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidParameterValue", bad.text

    deleted = client.delete("/api/v1/replication-groups/rg", params={"retain_primary_cluster": "false"})
    assert deleted.status_code == 200 and deleted.json()["Status"] == "deleting", deleted.text
    world.settle()
    assert client.get("/api/v1/replication-groups/rg").status_code == 404


def test_group_refusals(world: World, client: TestClient) -> None:
    _same_error(client.post("/api/v1/replication-groups", json={"ReplicationGroupId": "rg", "NumCacheClusters": 9,
                                                                **GROUP}),
                world, "CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=9, **GROUP)
    _same_error(client.patch("/api/v1/replication-groups/nope", json={"ApplyImmediately": True}),
                world, "ModifyReplicationGroup", ReplicationGroupId="nope", ApplyImmediately=True)
    _same_error(client.delete("/api/v1/replication-groups/nope"),
                world, "DeleteReplicationGroup", ReplicationGroupId="nope")
    _same_error(client.post("/api/v1/replication-groups/nope/test-failover"),
                world, "TestFailover", ReplicationGroupId="nope", NodeGroupId="0001")
    missing = client.post("/api/v1/replication-groups", json={"ReplicationGroupId": "rg"})
    assert missing.status_code == 400 and missing.json()["code"] == "MissingParameter"
    stray = client.patch("/api/v1/replication-groups/rg", json={"ReplicationGroupId": "other"})
    assert stray.status_code == 400 and stray.json()["code"] == "InvalidParameterValue"


def test_snapshots_create_copy_list_and_delete(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    settle(world, lambda: _status(world, "web") == "available")
    created = client.post("/api/v1/snapshots", json={"CacheClusterId": "web", "SnapshotName": "bk"})
    assert created.status_code == 201, created.text
    assert created.json()["SnapshotStatus"] == "creating"
    settle(world, lambda: client.get("/api/v1/snapshots/bk").json()["SnapshotStatus"] == "available")
    shown = client.get("/api/v1/snapshots/bk").json()
    assert shown["NodeSnapshots"][0]["CacheNodeId"] == "0001"

    copied = client.post("/api/v1/snapshots/bk/copy", json={"TargetSnapshotName": "bk2"})
    assert copied.status_code == 201, copied.text
    assert copied.json()["SnapshotName"] == "bk2"
    settle(world, lambda: client.get("/api/v1/snapshots/bk2").json()["SnapshotStatus"] == "available")
    listed = client.get("/api/v1/snapshots", params={"cluster": "web"}).json()["Snapshots"]
    assert [s["SnapshotName"] for s in listed] == ["bk", "bk2"]
    assert client.get("/api/v1/snapshots", params={"source": "automated"}).json()["Snapshots"] == []

    deleted = client.delete("/api/v1/snapshots/bk2")
    assert deleted.status_code == 200 and deleted.json()["SnapshotStatus"] == "deleting"
    settle(world)
    assert [s["SnapshotName"] for s in client.get("/api/v1/snapshots").json()["Snapshots"]] == ["bk"]


def test_snapshot_refusals(world: World, client: TestClient) -> None:
    _same_error(client.get("/api/v1/snapshots/nope"), world, "DescribeSnapshots", SnapshotName="nope")
    _same_error(client.post("/api/v1/snapshots", json={"CacheClusterId": "nope", "SnapshotName": "a"}),
                world, "CreateSnapshot", CacheClusterId="nope", SnapshotName="a")
    _same_error(client.post("/api/v1/snapshots/nope/copy", json={"TargetSnapshotName": "b"}),
                world, "CopySnapshot", SourceSnapshotName="nope", TargetSnapshotName="b")
    _same_error(client.delete("/api/v1/snapshots/nope"), world, "DeleteSnapshot", SnapshotName="nope")
    _same_error(client.get("/api/v1/snapshots", params={"source": "sometimes"}),
                world, "DescribeSnapshots", SnapshotSource="sometimes")
    _same_error(client.get("/api/v1/snapshots", params={"cluster": "nope"}),
                world, "DescribeSnapshots", CacheClusterId="nope")
    assert client.post("/api/v1/snapshots/x/copy", json={}).json()["code"] == "MissingParameter"
    assert client.get("/api/v1/snapshots", params={"max_records": "many"}).status_code == 400


def test_fault_refusals_answer_in_the_aws_error_shape(world: World, client: TestClient) -> None:
    """Fault routes refuse as the resource routes do: AWS's code, status and side, not {"detail"}."""
    reply = client.post("/api/v1/faults/node", json={"cluster_id": "nope", "action": "kill"})
    assert reply.status_code == 404, reply.text
    assert reply.json() == {"code": "CacheClusterNotFound", "message": "CacheCluster nope not found.",
                            "type": "Sender"}
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    for body, code in (({"cluster_id": "web", "action": "explode"}, "InvalidParameterValue"),
                       ({"cluster_id": "web", "node_id": "0009", "action": "kill"}, "InvalidParameterValue"),
                       ({"cluster_id": "web"}, "MissingParameter")):
        reply = client.post("/api/v1/faults/node", json=body)
        assert reply.status_code == 400 and reply.json()["code"] == code, (body, reply.text)
    reply = client.post("/api/v1/faults/availability-zone", json={"availability_zone": "us-east-1a", "seconds": 0})
    assert reply.status_code == 400 and reply.json()["code"] == "InvalidParameterValue", reply.text
    ok = client.post("/api/v1/faults/node", json={"cluster_id": "web", "action": "kill"})
    assert ok.status_code == 200 and ok.json()["nodes"] == ["web/0001"]
