"""A zone interruption as Describe shows it, on real nodes: while the zone is down its node
refuses connections and does not read `available`; once the zone is restored the node is back and
reads `available` again."""

from __future__ import annotations

from typing import Any

import redis

from tests.api.conftest import LiveServer
from tests.eventually import eventually


def test_a_node_in_an_interrupted_zone_reads_down_until_the_zone_is_back(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="zoned", Engine="redis", CacheNodeType="cache.t3.micro",
                            NumCacheNodes=1, PreferredAvailabilityZone="us-east-1a")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="zoned", WaiterConfig={"Delay": 1})

    def described() -> tuple[str, str, dict[str, Any]]:
        c = ec.describe_cache_clusters(CacheClusterId="zoned", ShowCacheNodeInfo=True)["CacheClusters"][0]
        node = c["CacheNodes"][0]
        return c["CacheClusterStatus"], node["CacheNodeStatus"], node["Endpoint"]

    endpoint = described()[2]
    try:
        server.admin("POST", "/api/v1/faults/availability-zone", {"availability_zone": "us-east-1a",
                                                                    "seconds": 120})
        def not_available() -> tuple[str, str, dict[str, Any]] | None:
            seen = described()
            return seen if seen[1] != "available" else None

        down = eventually(not_available, 15.0, 0.05, "the node not reading available")
        assert down[:2] == ("rebooting cache cluster nodes", "rebooting")
        client = redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=1)
        try:
            client.ping()
            raise AssertionError("the node of an interrupted zone answered")
        except redis.ConnectionError:
            pass
        finally:
            client.close()
    finally:
        server.admin("DELETE", "/api/v1/faults/availability-zone/us-east-1a")
    eventually(lambda: described()[:2] == ("available", "available"), 30.0, 0.05, "the node back")
    client = redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=2)
    try:
        assert client.ping()
    finally:
        client.close()
