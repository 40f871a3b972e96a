"""Sharding over a memcached cluster with consistent hashing, nodes found by auto discovery.

The cluster's configuration endpoint (DescribeCacheClusters' ConfigurationEndpoint) answers
`config get cluster` with the node list, as ElastiCache's does; pymemcache's HashClient spreads
keys over the nodes by rendezvous (consistent) hashing. Removing a node (ModifyCacheCluster with
CacheNodeIdsToRemove) then costs only the keys that lived on it: the others keep their node, and
their hits. With `hash % N` most keys would move (both are measured).

Run: .venv/bin/python -m examples.memcached_sharding.app   (with `make serve` running)"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymemcache.client.hash import HashClient

from examples import common

CLUSTER_ID = "example-memcached"


def discover(ec: Any, cluster_id: str = CLUSTER_ID) -> list[tuple[str, int]]:
    """The cluster's nodes, from its configuration endpoint (`config get cluster`), as AWS's
    ElastiCache Cluster Client does: `CONFIG cluster 0 <n>`, a version line, `host|ip|port ...`."""
    cluster = ec.describe_cache_clusters(CacheClusterId=cluster_id)["CacheClusters"][0]
    endpoint = cluster["ConfigurationEndpoint"]
    with socket.create_connection((endpoint["Address"], endpoint["Port"]), timeout=5) as s:
        s.sendall(b"config get cluster\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("configuration endpoint closed the connection")
            data += chunk
    _header, _version, nodes, *_ = data.decode().split("\n")
    return [(ip or host, int(port)) for host, ip, port in (n.split("|") for n in nodes.split())]


def connect(nodes: list[tuple[str, int]]) -> HashClient:
    """A node that fails is skipped for a second (its keys go to the others meanwhile), then retried;
    errors read as misses (ignore_exc), so the source of truth answers. no_delay: without it a `set`
    sent with noreply, then a `get`, wait on Nagle and delayed ACKs (40 ms a key: measured)."""
    return HashClient(nodes, connect_timeout=0.5, timeout=0.5, retry_attempts=1, retry_timeout=0.2,
                      dead_timeout=1, ignore_exc=True, no_delay=True)


@dataclass
class Shards:
    client: HashClient
    load: Callable[[str], str]  # the source of truth
    ttl: int = 600
    hits: int = 0
    misses: int = 0

    def get(self, key: str) -> str:
        cached = self.client.get(key)
        if cached is not None:
            self.hits += 1
            return str(cached.decode())
        self.misses += 1
        value = self.load(key)
        self.client.set(key, value.encode(), expire=self.ttl)
        return value

    def node_of(self, key: str) -> str:
        return str(self.client.hasher.get_node(key))


def remove_node(ec: Any, cluster_id: str, node_id: str) -> None:
    """ModifyCacheCluster: one node fewer, naming the node to remove."""
    count = len(ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0][
        "CacheNodes"])
    ec.modify_cache_cluster(CacheClusterId=cluster_id, NumCacheNodes=count - 1, CacheNodeIdsToRemove=[node_id],
                            ApplyImmediately=True)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cluster_id, WaiterConfig=common.QUICK)


def modulo_moved(keys: list[str], before: int, after: int) -> float:
    """The share of keys whose node changes when hash % before becomes hash % after."""
    return sum(zlib.crc32(k.encode()) % before != zlib.crc32(k.encode()) % after for k in keys) / len(keys)


def value_of(key: str) -> str:
    return f"value of {key}"


def main() -> None:
    ec = common.elasticache()
    common.cache_cluster(ec, CLUSTER_ID, engine="memcached", nodes=3)
    nodes = discover(ec)
    print("auto discovery found", nodes)
    shards = Shards(connect(nodes), value_of)
    keys = [f"item:{i}" for i in range(3000)]
    for key in keys:
        shards.get(key)  # fill
    shards.hits = shards.misses = 0
    for key in keys:
        shards.get(key)
    print(f"3 nodes: hit ratio {shards.hits / len(keys):.1%}")
    removed = ec.describe_cache_clusters(CacheClusterId=CLUSTER_ID, ShowCacheNodeInfo=True)["CacheClusters"][0][
        "CacheNodes"][-1]
    share = sum(shards.node_of(k).endswith(f"{removed['Endpoint']['Address']}:{removed['Endpoint']['Port']}")
                for k in keys) / len(keys)
    remove_node(ec, CLUSTER_ID, removed["CacheNodeId"])
    shards.client = connect(discover(ec))
    shards.hits = shards.misses = 0
    for key in keys:
        shards.get(key)
    print(f"node {removed['CacheNodeId']} removed (it held {share:.1%} of the keys): hit ratio "
          f"{shards.hits / len(keys):.1%}; with hash % N, {modulo_moved(keys, 3, 2):.1%} of keys would have moved")
    common.delete(ec, cluster_id=CLUSTER_ID)


if __name__ == "__main__":
    main()
