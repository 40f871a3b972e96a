"""Memcached sharding against a live 3-node cluster: auto discovery, a node killed under the
workload, and a node removed with ModifyCacheCluster costing exactly its own keys."""

from __future__ import annotations

import contextlib
import time

from pymemcache.client.base import Client

from examples import common
from examples.memcached_sharding.app import Shards, connect, discover, modulo_moved, remove_node, value_of
from tests.api.conftest import LiveServer
from tests.eventually import eventually

CLUSTER = "test-memcached"


def test_memcached_sharding(service: LiveServer) -> None:
    ec = common.elasticache()
    cluster = common.cache_cluster(ec, CLUSTER, engine="memcached", nodes=3)
    by_id = {n["CacheNodeId"]: (n["Endpoint"]["Address"], n["Endpoint"]["Port"]) for n in cluster["CacheNodes"]}
    nodes = discover(ec, CLUSTER)
    assert sorted(nodes) == sorted(by_id.values())  # auto discovery agrees with DescribeCacheClusters

    shards = Shards(connect(nodes), value_of)
    keys = [f"item:{i}" for i in range(1500)]
    for key in keys:
        assert shards.get(key) == value_of(key)
    assert (shards.hits, shards.misses) == (0, len(keys))
    spread = {addr: sum(shards.node_of(k) == f"{addr[0]}:{addr[1]}" for k in keys) for addr in nodes}
    assert all(count > len(keys) / 6 for count in spread.values()), spread  # every node has a fair share

    # Drill: node 0001 is killed while reads go on. Its keys read as misses (answered by the source
    # of truth) while it is down; the node comes back empty, and filling it again needs no restart.
    victim = by_id["0001"]
    position = 0

    def read_some() -> None:
        nonlocal position
        for key in keys[position % len(keys):][:50]:
            assert shards.get(key) == value_of(key)
        position += 50

    def back() -> bool:
        with contextlib.suppress(Exception):
            probe = Client(victim, connect_timeout=0.5, timeout=0.5)
            stats = probe.stats()
            probe.close()
            return int(stats[b"uptime"]) < 30 and int(stats[b"curr_items"]) > 0  # restarted, and refilled
        return False

    shards.hits = shards.misses = 0
    with common.Repeat(read_some) as reads:
        eventually(lambda: reads.calls > 3, timeout=10)
        killed = time.monotonic()
        common.kill_node(CLUSTER, "0001")
        eventually(back, timeout=30, message="node 0001 back and filled again")
        took = time.monotonic() - killed
    assert reads.failures == []
    print(f"\ndrill: node 0001 killed; back and refilled after {took:.2f} s; {reads.calls * 50} reads meanwhile "
          f"({shards.misses} misses), the slowest 50 took {reads.slowest * 1000:.0f} ms")
    for key in keys:  # refill whatever the node lost
        shards.get(key)
    shards.hits = shards.misses = 0
    for key in keys:
        shards.get(key)
    assert shards.hits == len(keys)  # all hits again

    # Remove node 0003: exactly its keys miss; every other key keeps its node and its hit.
    gone = f"{by_id['0003'][0]}:{by_id['0003'][1]}"
    lost = {k for k in keys if shards.node_of(k) == gone}
    remove_node(ec, CLUSTER, "0003")
    assert sorted(discover(ec, CLUSTER)) == sorted([by_id["0001"], by_id["0002"]])
    shards.client = connect(discover(ec, CLUSTER))
    shards.hits = shards.misses = 0
    missed = set()
    for key in keys:
        misses = shards.misses
        assert shards.get(key) == value_of(key)
        if shards.misses > misses:
            missed.add(key)
    assert missed == lost
    print(f"node 0003 removed: it held {len(lost) / len(keys):.1%} of the keys; hit ratio after "
          f"{shards.hits / len(keys):.1%}; hash % N would have moved {modulo_moved(keys, 3, 2):.1%}")
    common.delete(ec, cluster_id=CLUSTER)
