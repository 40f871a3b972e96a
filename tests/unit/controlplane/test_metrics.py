"""GET /metrics on the fake runtime: the nodes' CloudWatch metrics under AWS's names and labels,
read by the sampler (never by the scrape); the service's own metrics moving with its work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from controlplane.admin.api import admin_router
from controlplane.metrics import install
from controlplane.metrics.cloudwatch import node_values
from controlplane.state.records import CacheCluster
from engine import NodeStats
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_failover_machine import NODE, _make

ACCOUNT, REGION = "123456789012", "us-east-1"
WEB = f"{ACCOUNT}-{REGION}-web-0001"
INFO = {"keyspace_hits": "5", "keyspace_misses": "2", "connected_clients": "3", "used_memory": "1000",
        "maxmemory": "4000", "total_connections_received": "9", "evicted_keys": "1",
        "total_net_input_bytes": "100", "total_net_output_bytes": "300", "fake_read_calls": "7",
        "fake_write_calls": "4"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.service = world.service
    app.router.add_route("/", world.service.query.endpoint, methods=["GET", "POST"])
    app.include_router(admin_router())
    install(app, world.service.metrics)
    with TestClient(app) as c:
        yield c


def scrape(client: TestClient) -> Samples:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def node(cluster: str, engine: str, node_id: str = "0001", group: str = "") -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"cache_cluster_id": cluster, "cache_node_id": node_id, "replication_group_id": group,
                         "engine": engine, "account": ACCOUNT, "region": REGION}.items()))


def test_nodes_metrics_have_aws_names_labels_and_the_engines_values(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=2)
    world.settle()
    world.runtime.set_stats(WEB, INFO)
    world.runtime.set_data(WEB, {"a": "1", "b": "2"})
    mc = f"{ACCOUNT}-{REGION}-mc-0002"
    world.runtime.set_stats(mc, {"get_hits": "11", "get_misses": "4", "cmd_set": "6", "curr_connections": "2",
                                 "curr_items": "5", "bytes": "512", "limit_maxbytes": "1024"})
    world.runtime.set_stats(f"{ACCOUNT}-{REGION}-mc-0001", {"get_hits": "0"})
    assert scrape(client).get(("elasticache_CacheHits_total", node("web", "redis"))) is None  # not read yet
    world.service.metrics.sampler.sample()
    got = scrape(client)
    web = node("web", "redis")
    assert got[("elasticache_CacheHits_total", web)] == 5
    assert got[("elasticache_CacheMisses_total", web)] == 2
    assert got[("elasticache_CurrConnections", web)] == 3
    assert got[("elasticache_NewConnections_total", web)] == 9
    assert got[("elasticache_Evictions_total", web)] == 1
    assert got[("elasticache_CurrItems", web)] == 2
    assert got[("elasticache_BytesUsedForCache", web)] == 1000
    assert got[("elasticache_DatabaseMemoryUsagePercentage", web)] == 25
    assert got[("elasticache_NetworkBytesIn_total", web)] == 100
    assert got[("elasticache_NetworkBytesOut_total", web)] == 300
    assert got[("elasticache_GetTypeCmds_total", web)] == 7
    assert got[("elasticache_SetTypeCmds_total", web)] == 4
    assert got[("elasticache_IsMaster", web)] == 1
    assert ("elasticache_ReplicationLag", web) not in got  # a primary has none
    two = node("mc", "memcached", "0002")
    assert got[("elasticache_GetHits_total", two)] == 11 and got[("elasticache_GetMisses_total", two)] == 4
    assert got[("elasticache_CmdSet_total", two)] == 6 and got[("elasticache_CurrItems", two)] == 5
    assert got[("elasticache_UnusedMemory", two)] == 512
    assert ("elasticache_CacheHits_total", two) not in got  # memcached's names are AWS's memcached ones
    assert got[("elasticache_GetHits_total", node("mc", "memcached", "0001"))] == 0
    assert got[("elasticache_local_nodes", (("status", "available"),))] == 3


def test_a_node_gone_or_down_leaves_the_metrics(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.call("CreateCacheCluster", CacheClusterId="other", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    world.service.metrics.sampler.sample()
    assert ("elasticache_IsMaster", node("web", "redis")) in scrape(client)
    world.runtime.crash(WEB)
    world.service.metrics.sampler.sample()
    got = scrape(client)
    assert ("elasticache_IsMaster", node("web", "redis")) not in got  # down: no reading
    assert ("elasticache_IsMaster", node("other", "redis")) in got
    world.settle()
    world.call("DeleteCacheCluster", CacheClusterId="web")
    world.settle()
    world.service.metrics.sampler.sample()
    got = scrape(client)
    assert not [k for k in got if ("cache_cluster_id", "web") in k[1]]
    assert got[("elasticache_local_nodes", (("status", "available"),))] == 1


def test_a_scrape_never_reaches_a_node(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    world.service.metrics.sampler.sample()
    reads = len(world.runtime.calls_of("node_stats"))
    for _ in range(3):
        assert ("elasticache_IsMaster", node("web", "redis")) in scrape(client)
    assert len(world.runtime.calls_of("node_stats")) == reads


def test_replicas_report_their_lag_from_the_primary_and_is_master_follows_the_role(world: World,
                                                                                   client: TestClient) -> None:
    rg = _make(world)
    primary = rg.status.primary
    assert primary is not None
    clusters = {c.id: c for c in world.service.store.records(CacheCluster)}
    replica = next(cid for cid in clusters if cid != primary)
    r = clusters[replica].status.nodes[0]
    slave = f"ip={r.host},port={r.port},state=online,offset=4096,lag=3"
    world.runtime.set_stats(NODE.format(primary), {"connected_slaves": "2", "master_repl_offset": "4096",
                                                   "slave0": slave})
    world.service.metrics.sampler.sample()
    got = scrape(client)
    assert got[("elasticache_IsMaster", node(primary, "redis", group="rg"))] == 1
    assert got[("elasticache_IsMaster", node(replica, "redis", group="rg"))] == 0
    assert got[("elasticache_ReplicationLag", node(replica, "redis", group="rg"))] == 3
    assert got[("elasticache_ReplicationBytes_total", node(primary, "redis", group="rg"))] == 4096


def test_cpu_is_a_rate_between_two_readings() -> None:
    before = NodeStats("redis", {"used_cpu_sys_main_thread": "1.0", "used_cpu_user_main_thread": "1.0"}, 10.0, 100.0)
    after = NodeStats("redis", {"used_cpu_sys_main_thread": "1.5", "used_cpu_user_main_thread": "2.0"}, 13.0, 102.0)
    first = node_values(before, None, cpus=2)
    assert "CPUUtilization" not in first and "EngineCPUUtilization" not in first  # one reading: no rate
    values = node_values(after, before, cpus=2)
    assert values["CPUUtilization"] == 75.0  # 3 CPU seconds in 2 s: 150% of a core, 75% of two
    assert values["EngineCPUUtilization"] == 75.0  # 1.5 s of the main thread in 2 s
    restarted = NodeStats("redis", {}, 0.5, 104.0)
    assert "CPUUtilization" not in node_values(restarted, after, cpus=2)  # counters went back: no rate


def test_service_metrics_move_with_requests_reconciles_and_failovers(world: World, client: TestClient) -> None:
    def count(got: Samples, name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in got.items() if n == name and set(labels.items()) <= set(ls))

    before = scrape(client)
    reply = client.post("/", data={"Action": "DescribeCacheClusters", "Version": "2015-02-02"})
    assert reply.status_code == 200
    client.get("/api/v1/cache-clusters/nope")
    client.post("/", data={"Action": "NoSuchThing", "Version": "2015-02-02"})
    _make(world)
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    world.settle()
    got = scrape(client)
    api = "elasticache_local_api_request_duration_seconds_count"
    assert count(got, api, api="query", operation="DescribeCacheClusters") == \
        count(before, api, api="query", operation="DescribeCacheClusters") + 1
    assert count(got, api, api="query", operation="unreadable") == 1
    assert count(got, api, api="json", operation="GET /api/v1/cache-clusters/{cluster_id}") == 1
    reconciles = "elasticache_local_reconcile_duration_seconds_count"
    assert count(got, reconciles, kind="replication-group") > count(before, reconciles, kind="replication-group")
    assert count(got, reconciles, kind="replication-group", outcome="done") > 0
    assert count(got, "elasticache_local_failovers_total", reason="automatic", outcome="completed") == 1
    assert count(got, "elasticache_local_failovers_total", reason="test", outcome="completed") == 1
    assert count(got, "elasticache_local_failover_duration_seconds_count", reason="automatic") == 1
