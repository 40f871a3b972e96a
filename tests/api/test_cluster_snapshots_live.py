"""Snapshots of a cluster-mode group with real nodes: 3 shards holding 20,000 keys (a part of them
with TTLs) are snapshotted (one RDB per shard), then restored into 2 and into 4 shards: every key,
value and TTL is where a RedisCluster from the new configuration endpoint finds it."""

from __future__ import annotations

from typing import Any

import pytest
from redis.cluster import RedisCluster

from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 600}
KEYS = 20_000
TTL = 3600  # seconds: every third key has one


def _client(ec: Any, group_id: str) -> RedisCluster:
    group = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0]
    config = group["ConfigurationEndpoint"]
    return RedisCluster(host=config["Address"], port=config["Port"], socket_timeout=5)


def _create(ec: Any, group_id: str, shards: int, replicas: int, **extra: Any) -> None:
    ec.create_replication_group(ReplicationGroupId=group_id, ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumNodeGroups=shards,
                                ReplicasPerNodeGroup=replicas, **extra)
    def available() -> bool:
        status = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0]["Status"]
        assert status != "create-failed", _events(ec, group_id)
        return bool(status == "available")

    eventually(available, 180, 0.2, lambda: f"{group_id} available; events: {_events(ec, group_id)}")


def _events(ec: Any, group_id: str) -> list[str]:
    return [e["Message"] for e in ec.describe_events(SourceType="replication-group", SourceIdentifier=group_id,
                                                     Duration=60)["Events"]]


def _contents(client: RedisCluster) -> dict[str, tuple[bytes | None, int]]:
    pipe = client.pipeline()
    for i in range(KEYS):
        pipe.get(f"key:{i}")
        pipe.ttl(f"key:{i}")
    replies = pipe.execute()
    return {f"key:{i}": (replies[2 * i], replies[2 * i + 1]) for i in range(KEYS)}


def _same(restored: dict[str, tuple[bytes | None, int]], original: dict[str, tuple[bytes | None, int]]) -> None:
    assert restored.keys() == original.keys()
    for key, (value, ttl) in original.items():
        got_value, got_ttl = restored[key]
        assert got_value == value, key
        if ttl == -1:
            assert got_ttl == -1, key
        else:  # the TTL went on running meanwhile
            assert ttl - 120 <= got_ttl <= ttl, (key, ttl, got_ttl)


@pytest.mark.slow
def test_three_shards_restored_into_two_and_four(ec: Any) -> None:
    _create(ec, "src", 3, 1)
    client = _client(ec, "src")
    pipe = client.pipeline()
    for i in range(KEYS):
        pipe.set(f"key:{i}", f"value-{i}", ex=TTL if i % 3 == 0 else None)
    pipe.execute()
    original = _contents(client)
    assert all(v is not None for v, _ in original.values())
    client.close()

    ec.create_snapshot(ReplicationGroupId="src", SnapshotName="three")
    eventually(lambda: ec.describe_snapshots(SnapshotName="three")["Snapshots"][0]["SnapshotStatus"] == "available",
               120, 0.1, "snapshot three available")
    snap = ec.describe_snapshots(SnapshotName="three", ShowNodeGroupConfig=True)["Snapshots"][0]
    assert snap["NumNodeGroups"] == 3
    nodes = snap["NodeSnapshots"]
    assert [n["NodeGroupId"] for n in nodes] == ["0001", "0002", "0003"]
    assert all(n["CacheClusterId"].endswith("-002") for n in nodes)  # taken from the replicas
    assert [n["NodeGroupConfiguration"]["Slots"] for n in nodes] == ["0-5461", "5462-10922", "10923-16383"]

    for group_id, shards in (("two", 2), ("four", 4)):
        _create(ec, group_id, shards, 1 if shards == 2 else 0, SnapshotName="three")
        restored = _client(ec, group_id)
        assert len(restored.get_primaries()) == shards
        _same(_contents(restored), original)
        assert restored.dbsize(target_nodes=RedisCluster.PRIMARIES) == KEYS
        restored.close()
        ec.delete_replication_group(ReplicationGroupId=group_id)

