"""GET /metrics against real nodes: traffic through redis-py and pymemcache moves the CloudWatch
metrics the service reads from the engines, a replication group's roles and lag show, and a
deleted cluster's series go."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pymemcache.client.base import Client as Memcache

from tests.api.conftest import RUNTIMES, LiveServer, require_docker, running_server
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 100}
# Networks of this module's own server, apart from the session server's (tests/api/conftest.py).
NETWORKS = {"process": ("127.0.136.0/24", "127.0.137.0/24"), "docker": ("127.0.138.0/24", "127.0.139.0/24")}


@pytest.fixture(scope="module", params=RUNTIMES)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    runtime: str = request.param
    if runtime == "docker":
        require_docker()
    nodes, endpoints = NETWORKS[runtime]
    with running_server(runtime, tmp_path_factory.mktemp(f"metrics-{runtime}"),
                        ELASTICACHE_LOCAL_METRICS_INTERVAL="0.2", ELASTICACHE_LOCAL_NODE_NETWORK=nodes,
                        ELASTICACHE_LOCAL_ENDPOINT_NETWORK=endpoints) as server:
        yield server


def families(server: LiveServer) -> list[Metric]:
    return list(text_string_to_metric_families(
        urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()))


def scrape(server: LiveServer, name: str) -> dict[str, float]:
    """{cache_cluster_id: value} of one metric (single-node clusters)."""
    return {s.labels["cache_cluster_id"]: s.value for family in families(server) for s in family.samples
            if s.name == name}


def grows(server: LiveServer, name: str, cluster: str, above: float) -> float:
    def check() -> float | None:
        value = scrape(server, name).get(cluster)
        assert value is not None and value > above, f"{name}[{cluster}] = {value}, want > {above}"
        return value

    return eventually(check, 10.0, 0.05, f"{name} of {cluster} above {above}")


def quiet_gauge(server: LiveServer, name: str, cluster: str) -> float:
    """A gauge of transient things (CurrConnections counts the health probes' and the sampler's
    own short connections) at its lowest over a dozen sampler rounds: one reading can catch a
    probe in flight and set a baseline that an extra client never rises above."""
    seen: list[float] = []

    def enough() -> tuple[float] | None:  # a tuple: a lowest reading of 0 is an answer too
        seen.append(scrape(server, name).get(cluster, 0.0))
        return (min(seen),) if len(seen) >= 12 else None

    return eventually(enough, 10.0, 0.2, f"a dozen readings of {name} of {cluster}")[0]


def _endpoint(ec: Any, cluster_id: str) -> tuple[str, int]:
    node = ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0]
    address = node["CacheNodes"][0]["Endpoint"]
    return address["Address"], address["Port"]


def test_traffic_moves_the_cloudwatch_metrics_of_redis_and_memcached_nodes(live: LiveServer) -> None:
    ec = live.client()
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.create_cache_cluster(CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
                            NumCacheNodes=1)
    for cid in ("web", "mc"):
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cid, WaiterConfig=FAST)
    hits = eventually(lambda: scrape(live, "elasticache_CacheHits_total").get("web") is not None, 10.0, 0.05)
    assert hits
    base = {name: scrape(live, name)["web"] for name in (
        "elasticache_CacheHits_total", "elasticache_CacheMisses_total", "elasticache_SetTypeCmds_total",
        "elasticache_GetTypeCmds_total", "elasticache_NetworkBytesIn_total")}
    base["elasticache_CurrConnections"] = quiet_gauge(live, "elasticache_CurrConnections", "web")
    host, port = _endpoint(ec, "web")
    r = redis.Redis(host=host, port=port, socket_timeout=2)
    for i in range(20):
        r.set(f"k{i}", "v")
    assert r.get("k1") == b"v" and r.get("missing") is None
    assert grows(live, "elasticache_SetTypeCmds_total", "web", base["elasticache_SetTypeCmds_total"] + 19)
    assert grows(live, "elasticache_CacheHits_total", "web", base["elasticache_CacheHits_total"])
    assert grows(live, "elasticache_CacheMisses_total", "web", base["elasticache_CacheMisses_total"])
    assert grows(live, "elasticache_GetTypeCmds_total", "web", base["elasticache_GetTypeCmds_total"] + 1)
    assert grows(live, "elasticache_NetworkBytesIn_total", "web", base["elasticache_NetworkBytesIn_total"])
    # redis-py's connection stays open: one more client than before it connected.
    assert grows(live, "elasticache_CurrConnections", "web", base["elasticache_CurrConnections"])
    assert eventually(lambda: scrape(live, "elasticache_CurrItems").get("web") == 20, 10.0, 0.05)
    assert scrape(live, "elasticache_IsMaster")["web"] == 1
    assert 0 < scrape(live, "elasticache_DatabaseMemoryUsagePercentage")["web"] < 100
    assert scrape(live, "elasticache_CPUUtilization")["web"] >= 0
    r.close()

    host, port = _endpoint(ec, "mc")
    mc = Memcache((host, port), connect_timeout=2, timeout=2)
    before = {n: scrape(live, n).get("mc", 0.0) for n in ("elasticache_CmdSet_total", "elasticache_GetHits_total",
                                                          "elasticache_GetMisses_total")}
    before["elasticache_CurrConnections"] = quiet_gauge(live, "elasticache_CurrConnections", "mc")
    mc.set("a", b"1")
    assert mc.get("a") == b"1" and mc.get("nope") is None
    assert grows(live, "elasticache_CmdSet_total", "mc", before["elasticache_CmdSet_total"])
    assert grows(live, "elasticache_GetHits_total", "mc", before["elasticache_GetHits_total"])
    assert grows(live, "elasticache_GetMisses_total", "mc", before["elasticache_GetMisses_total"])
    assert grows(live, "elasticache_CurrConnections", "mc", before["elasticache_CurrConnections"])
    assert eventually(lambda: scrape(live, "elasticache_CurrItems").get("mc") == 1, 10.0, 0.05)
    mc.close()

    ec.delete_cache_cluster(CacheClusterId="web")
    ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="web", WaiterConfig=FAST)
    eventually(lambda: "web" not in scrape(live, "elasticache_IsMaster"), 10.0, 0.05, "web's series gone")
    ec.delete_cache_cluster(CacheClusterId="mc")
    ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="mc", WaiterConfig=FAST)


def test_a_replication_group_shows_roles_lag_and_replication_bytes(live: LiveServer) -> None:
    ec = live.client()
    ec.create_replication_group(ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    group = ec.describe_replication_groups(ReplicationGroupId="rg")["ReplicationGroups"][0]
    primary = group["NodeGroups"][0]["PrimaryEndpoint"]
    roles = {m["CacheClusterId"]: m["CurrentRole"] for m in group["NodeGroups"][0]["NodeGroupMembers"]}
    r = redis.Redis(host=primary["Address"], port=primary["Port"], socket_timeout=2)
    r.set("k", "v" * 1000)
    want = {cid: 1.0 if role == "primary" else 0.0 for cid, role in roles.items()}
    eventually(lambda: {c: v for c, v in scrape(live, "elasticache_IsMaster").items() if c in want} == want,
               10.0, 0.05, "IsMaster of both members")
    (replica,) = [cid for cid, role in roles.items() if role == "replica"]
    (primary_id,) = [cid for cid, role in roles.items() if role == "primary"]
    assert eventually(lambda: replica in scrape(live, "elasticache_ReplicationLag"), 10.0, 0.05)
    assert scrape(live, "elasticache_ReplicationLag")[replica] <= 2  # acknowledged within the last seconds
    assert grows(live, "elasticache_ReplicationBytes_total", primary_id, 1000)
    r.close()
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)


def test_the_service_metrics_are_there(live: LiveServer) -> None:
    live.client().describe_cache_clusters()
    names = {family.name for family in families(live)}
    for name in ("elasticache_local_api_request_duration_seconds", "elasticache_local_reconcile_duration_seconds",
                 "elasticache_local_nodes", "elasticache_local_node_metrics_read_seconds"):
        assert name in names, name

