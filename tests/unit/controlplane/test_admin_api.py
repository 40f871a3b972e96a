"""The JSON API's resource routes answer from the service layer (the Query API's handlers): the
same shapes as DescribeCacheClusters & co, and the same errors, as JSON."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controlplane.admin.api import admin_router
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_replication_groups import _make

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.service = world.service
    app.include_router(admin_router())
    with TestClient(app) as c:
        yield c


def test_cache_clusters_are_what_describe_cache_clusters_says(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=2)
    world.settle()
    listed = client.get("/api/v1/cache-clusters").json()
    described = world.call("DescribeCacheClusters", ShowCacheNodeInfo=True)["CacheClusters"]
    assert [c["CacheClusterId"] for c in listed["CacheClusters"]] == [c["CacheClusterId"] for c in described]
    web = client.get("/api/v1/cache-clusters/web").json()
    assert web["CacheClusterStatus"] == "available" and web["Engine"] == "redis"
    assert [n["CacheNodeId"] for n in web["CacheNodes"]] == ["0001"]
    described_web = next(c for c in described if c["CacheClusterId"] == "web")
    assert web["CacheNodes"][0]["Endpoint"] == described_web["CacheNodes"][0]["Endpoint"]
    assert len(client.get("/api/v1/cache-clusters/mc").json()["CacheNodes"]) == 2


def test_a_missing_cluster_is_the_aws_error_as_json(world: World, client: TestClient) -> None:
    reply = client.get("/api/v1/cache-clusters/nope")
    with pytest.raises(ApiError) as err:
        world.call("DescribeCacheClusters", CacheClusterId="nope")
    assert reply.status_code == err.value.status == 404
    assert reply.json() == {"code": err.value.code, "message": err.value.message, "type": "Sender"}
    assert reply.json()["code"] == "CacheClusterNotFound"


def test_paging_follows_the_service_rules(world: World, client: TestClient) -> None:
    reply = client.get("/api/v1/cache-clusters", params={"max_records": 5})
    assert reply.status_code == 400
    assert reply.json()["code"] == "InvalidParameterValue"
    for i in range(21):
        world.call("CreateCacheCluster", CacheClusterId=f"c{i:02d}", **REDIS)
    first = client.get("/api/v1/cache-clusters", params={"max_records": 20}).json()
    rest = client.get("/api/v1/cache-clusters", params={"marker": first["Marker"]}).json()
    assert len(first["CacheClusters"]) == 20 and [c["CacheClusterId"] for c in rest["CacheClusters"]] == ["c20"]


def test_resources_are_scoped_by_account_and_region(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    assert len(client.get("/api/v1/cache-clusters").json()["CacheClusters"]) == 1
    assert client.get("/api/v1/cache-clusters", params={"region": "eu-west-1"}).json()["CacheClusters"] == []
    assert client.get("/api/v1/cache-clusters/web", params={"account": "210987654321"}).status_code == 404


def test_replication_groups_and_events(world: World, client: TestClient) -> None:
    _make(world)
    groups = client.get("/api/v1/replication-groups").json()["ReplicationGroups"]
    assert [g["ReplicationGroupId"] for g in groups] == ["rg"]
    group = client.get("/api/v1/replication-groups/rg").json()
    described = world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]
    created = described.pop("ReplicationGroupCreateTime")  # JSON has it as ISO 8601 text
    assert group.pop("ReplicationGroupCreateTime") == created.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert group == described
    assert client.get("/api/v1/replication-groups/nope").json()["code"] == "ReplicationGroupNotFoundFault"
    messages = [e["Message"] for e in client.get("/api/v1/events").json()["Events"]]
    assert messages == [e["Message"] for e in world.call("DescribeEvents")["Events"]]
    assert messages
