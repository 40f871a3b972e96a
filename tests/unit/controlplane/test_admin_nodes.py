"""GET /api/v1/nodes: each node as DescribeCacheClusters shows it, with what the nodes themselves
say (role, offsets, memory, clients, ops/s, read through NodeRuntime.stats and kept a second) and
the health monitor's verdict."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controlplane.admin.api import admin_router
from controlplane.admin.nodes import NodeStats
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
NODE = "123456789012-us-east-1-{}-{}"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    # Readings kept by the fake clock, so the test says when one is stale.
    world.service.node_stats = NodeStats(world.runtime, monotonic=world.clock.monotonic)
    app = FastAPI()
    app.state.service = world.service
    app.include_router(admin_router())
    with TestClient(app) as c:
        yield c
    world.service.node_stats.close()


def _nodes(client: TestClient, **params: str) -> dict[str, dict]:
    reply = client.get("/api/v1/nodes", params=params)
    assert reply.status_code == 200, reply.text
    return {f"{n['cache_cluster_id']}/{n['node_id']}": n for n in reply.json()["nodes"]}


def test_a_group_shows_roles_offsets_lag_and_counters(world: World, client: TestClient) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d",
               NumCacheClusters=2, AutomaticFailoverEnabled=True, **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    primary, replica = NODE.format("rg-001", "0001"), NODE.format("rg-002", "0001")
    world.runtime.set_stats(primary, {"master_repl_offset": "100", "connected_clients": "7",
                                      "instantaneous_ops_per_sec": "1234", "used_memory": "2048"})
    world.runtime.set_offset(replica, 60)
    world.service.health.probe_all()

    nodes = _nodes(client)
    assert set(nodes) == {"rg-001/0001", "rg-002/0001", "web/0001"}
    p, r = nodes["rg-001/0001"], nodes["rg-002/0001"]
    assert (p["role"], p["healthy"], p["replication_group_id"], p["node"]) == ("primary", True, "rg", primary)
    assert (p["replication_offset"], p["connected_clients"], p["ops_per_second"], p["used_memory_bytes"]) == (
        100, 7, 1234, 2048)
    assert p["replication_lag_bytes"] is None and p["status"] == "available" and p["engine"] == "redis"
    described = world.call("DescribeCacheClusters", CacheClusterId="rg-001", ShowCacheNodeInfo=True)
    endpoint = described["CacheClusters"][0]["CacheNodes"][0]["Endpoint"]
    assert (p["address"], p["port"]) == (endpoint["Address"], endpoint["Port"])
    assert (r["role"], r["replication_offset"], r["replication_lag_bytes"], r["replication_link"]) == (
        "replica", 60, 40, "up")
    assert nodes["web/0001"]["replication_group_id"] is None and nodes["web/0001"]["role"] == "primary"
    assert set(_nodes(client, group="rg")) == {"rg-001/0001", "rg-002/0001"}
    assert set(_nodes(client, cluster="web")) == {"web/0001"}


def test_a_down_node_is_unhealthy_and_not_read(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    name = NODE.format("web", "0001")
    assert _nodes(client)["web/0001"]["healthy"] is None  # not probed yet
    world.service.health.probe_all()
    assert _nodes(client)["web/0001"]["healthy"] is True
    world.runtime.crash(name)
    world.clock.advance(5)
    reads = world.runtime.calls.count(("node_stats", name))
    node = _nodes(client)["web/0001"]
    assert (node["healthy"], node["role"], node["used_memory_bytes"]) == (False, None, None)
    assert world.runtime.calls.count(("node_stats", name)) == reads


def test_readings_are_kept_a_second(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    name = NODE.format("web", "0001")
    world.runtime.set_stats(name, {"connected_clients": "1"})
    assert _nodes(client)["web/0001"]["connected_clients"] == 1
    world.runtime.set_stats(name, {"connected_clients": "2"})
    for _ in range(5):  # a refresh storm: one reading
        assert _nodes(client)["web/0001"]["connected_clients"] == 1
    assert world.runtime.calls.count(("node_stats", name)) == 1
    world.clock.advance(1.0)
    assert _nodes(client)["web/0001"]["connected_clients"] == 2


def test_memcached_ops_per_second_come_from_its_counters(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro")
    world.settle()
    name = NODE.format("mc", "0001")
    world.runtime.set_stats(name, {"cmd_get": "10", "cmd_set": "5", "curr_connections": "3", "bytes": "99"})
    first = _nodes(client)["mc/0001"]
    assert (first["ops_per_second"], first["connected_clients"], first["used_memory_bytes"]) == (None, 3, 99)
    assert first["role"] is None and first["replication_offset"] is None
    world.runtime.set_stats(name, {"cmd_get": "30", "cmd_set": "15"})
    world.clock.advance(2.0)
    assert _nodes(client)["mc/0001"]["ops_per_second"] == 15.0


def test_unknown_cluster_or_group_is_the_aws_error(world: World, client: TestClient) -> None:
    missing = client.get("/api/v1/nodes", params={"cluster": "nope"})
    assert (missing.status_code, missing.json()["code"]) == (404, "CacheClusterNotFound")
    missing = client.get("/api/v1/nodes", params={"group": "nope"})
    assert (missing.status_code, missing.json()["code"]) == (404, "ReplicationGroupNotFoundFault")
    assert client.get("/api/v1/nodes").json() == {"nodes": []}


def test_the_aws_release_beside_what_really_runs(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", EngineVersion="7.1", **REDIS)
    world.settle()
    world.service.health.probe_all()
    node = _nodes(client)["web/0001"]
    # 7.1 is shown as AWS's 7.1.0; the fake runtime's nearest binary, 7.0.15, is what runs.
    assert (node["engine_version"], node["running_version"]) == ("7.1.0", "7.0.15")
