"""Cluster mode enabled with real nodes: a Redis Cluster of 3 shards behind its configuration
endpoint, used by redis-py's RedisCluster; kill -9 of a shard's primary under a writing client."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from tests.api.writer import Writer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 300}
RETRIED = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
           redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)


def _group(ec: Any) -> dict[str, Any]:
    return dict(ec.describe_replication_groups(ReplicationGroupId="cl")["ReplicationGroups"][0])


def _members(ec: Any) -> dict[str, dict[str, Any]]:
    return {m["CacheClusterId"]: {**m, "NodeGroupId": g["NodeGroupId"]}
            for g in _group(ec)["NodeGroups"] for m in g["NodeGroupMembers"]}


def _node(member: dict[str, Any]) -> redis.Redis:
    return redis.Redis(host=member["ReadEndpoint"]["Address"], port=member["ReadEndpoint"]["Port"],
                       socket_timeout=2, socket_connect_timeout=1)


def _retrying(call: Any, timeout: float = 15.0) -> Any:
    """What an application does with a RedisCluster during a failover: retry what may be retried
    (it follows MOVED itself; connection errors and CLUSTERDOWN pass while the shard fails over)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except RETRIED:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_cluster_of_three_shards_fails_over_a_shard_under_a_writer(ec: Any, engine: str) -> None:
    created = ec.create_replication_group(
        ReplicationGroupId="cl", ReplicationGroupDescription="d", Engine=engine, CacheNodeType="cache.t3.micro",
        NumNodeGroups=3, ReplicasPerNodeGroup=1)["ReplicationGroup"]
    assert created["Status"] == "creating" and created["ClusterEnabled"] is True
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
    group = _group(ec)
    assert group["ClusterEnabled"] is True and group["AutomaticFailover"] == "enabled"
    assert [g["Slots"] for g in group["NodeGroups"]] == ["0-5461", "5462-10922", "10923-16383"]
    assert all("PrimaryEndpoint" not in g for g in group["NodeGroups"])
    config = group["ConfigurationEndpoint"]
    members = _members(ec)
    assert len(members) == 6
    addresses = {(m["ReadEndpoint"]["Address"], m["ReadEndpoint"]["Port"]) for m in members.values()}
    pids = {k: _node(m).info("server")["process_id"] for k, m in members.items()}

    # The configuration endpoint answers CLUSTER SLOTS with the nodes' own addresses.
    # (Replicas are listed once the cluster's gossip has carried their first replication offset.)
    def announced() -> set[tuple[str, int]]:
        with redis.Redis(host=config["Address"], port=config["Port"], socket_timeout=2) as plain:
            slots = plain.execute_command("CLUSTER SLOTS")
        return {(n[0].decode(), int(n[1])) for s in slots for n in s[2:]}

    eventually(lambda: announced() == addresses, 10.0, 0.05, lambda: f"CLUSTER SLOTS: {announced()}")

    client = RedisCluster(host=config["Address"], port=config["Port"], socket_timeout=2, socket_connect_timeout=1)
    try:
        for i in range(10_000):
            client.set(f"k{i}", i)
        assert all(client.get(f"k{i}") == str(i).encode() for i in range(0, 10_000, 7))
        sizes = [_node(m).dbsize() for k, m in members.items() if m["CurrentRole"] == "primary"]
        assert len(sizes) == 3 and all(s > 2_500 for s in sizes)  # spread over the shards

        # kill -9 the primary of shard 0002 while a client writes through the cluster.
        victim = next(k for k, m in members.items() if m["NodeGroupId"] == "0002" and m["CurrentRole"] == "primary")
        others = {k: m for k, m in members.items() if m["NodeGroupId"] != "0002"}
        with Writer(client, prefix="w") as writer:  # retries what RedisCluster raises while a shard fails over
            eventually(lambda: len(writer.acked) >= 200, 10.0, 0.01, "the writer under way")
            os.kill(pids[victim], signal.SIGKILL)
            eventually(lambda: _members(ec)[victim]["CurrentRole"] == "replica", 10.0, 0.01, "the shard failed over")
            ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
            done = len(writer.acked)
            eventually(lambda: len(writer.acked) >= done + 500, 15.0, 0.01, "writes after the failover")
        after = _members(ec)
        promoted = next(k for k, m in after.items() if m["NodeGroupId"] == "0002" and m["CurrentRole"] == "primary")
        assert promoted != victim and after[victim]["CurrentRole"] == "replica"
        assert {k: m["CurrentRole"] for k, m in after.items() if k in others} == {
            k: m["CurrentRole"] for k, m in others.items()}
        # The other shards' primaries never restarted.
        assert all(_node(m).info("server")["process_id"] == pids[k] for k, m in others.items())
        # No acknowledged write was lost: the earlier keys and every acknowledged write.
        assert all(int(_retrying(lambda i=i: client.get(f"k{i}"))) == i for i in range(10_000))
        missing = [i for i in writer.acked if _retrying(lambda i=i: client.get(f"w{i}")) is None]
        assert missing == []
        # The cluster's own view agrees, through the configuration endpoint.
        with redis.Redis(host=config["Address"], port=config["Port"], socket_timeout=2) as plain:
            shards = {(int(s[0]), int(s[1])): (s[2][0].decode(), int(s[2][1]))
                      for s in plain.execute_command("CLUSTER SLOTS")}
        new = after[promoted]["ReadEndpoint"]
        assert shards[(5462, 10922)] == (new["Address"], new["Port"])
        events = [e["Message"] for e in ec.describe_events(SourceType="replication-group",
                                                           SourceIdentifier="cl")["Events"]]
        assert f"Failover from primary node {victim} to replica node {promoted} completed" in events
        # TestFailover of shard 0001: a coordinated CLUSTER FAILOVER, the client keeps its keys.
        first = next(k for k, m in after.items() if m["NodeGroupId"] == "0001" and m["CurrentRole"] == "primary")
        ec.test_failover(ReplicationGroupId="cl", NodeGroupId="0001")
        eventually(lambda: _members(ec)[first]["CurrentRole"] == "replica", 10.0, 0.02, "shard 0001 failed over")
        ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
        assert all(int(_retrying(lambda i=i: client.get(f"k{i}"))) == i for i in range(0, 10_000, 3))
    finally:
        client.close()

    ec.delete_replication_group(ReplicationGroupId="cl")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
    assert ec.describe_cache_clusters()["CacheClusters"] == []

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    eventually(lambda: all(gone(p) for p in pids.values() if p), 10.0, 0.05, "every node stopped")
