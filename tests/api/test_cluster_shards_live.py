"""Per-shard operations on a real Redis Cluster under a RedisCluster client: replicas added to and
removed from one shard, the node type rolled shard by shard under a writer (no acknowledged write
lost), TestFailover with a NodeGroupId; the cluster's own view (CLUSTER NODES / SLOTS) after each."""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from tests.api.test_cluster_mode_live import FAST, _group, _members, _node, _retrying
from tests.api.writer import Writer
from tests.eventually import eventually

NOW = {"ApplyImmediately": True}


def _wait(ec: Any) -> None:
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)


def _address(member: dict[str, Any]) -> tuple[str, int]:
    return member["ReadEndpoint"]["Address"], member["ReadEndpoint"]["Port"]


def _views(ec: Any) -> dict[str, tuple[str, set[str]]]:
    """Each member's cluster state and the addresses of every node it knows (CLUSTER NODES)."""
    out = {}
    for k, m in _members(ec).items():
        with _node(m) as node:
            state = node.cluster("info")["cluster_state"]
            nodes = node.execute_command("CLUSTER NODES")  # redis-py: "ip:port" -> fields
            # Every node's flags say `nofailover` (cluster-replica-no-failover): whole flags compared.
            known = {a for a, n in nodes.items() if not set(n["flags"].split(",")) & {"fail", "fail?", "handshake"}}
        out[k] = (state, known)
    return out


def _disagreement(ec: Any) -> str | None:
    """None when every member says cluster_state:ok and knows exactly the members, none failing."""
    members = _members(ec)
    everyone = {f"{a}:{p}" for a, p in map(_address, members.values())}
    views = _views(ec)
    bad = {k: v for k, v in views.items() if v != ("ok", everyone)}
    return f"members {sorted(everyone)}; nodes that disagree: {bad}" if bad else None


def _consistent(ec: Any) -> None:
    eventually(lambda: _disagreement(ec) is None, 10.0, 0.1, lambda: str(_disagreement(ec)))


def _announced(config: dict[str, Any]) -> set[tuple[str, int]]:
    """Every node the configuration endpoint's CLUSTER SLOTS names."""
    with redis.Redis(host=config["Address"], port=config["Port"], socket_timeout=2) as plain:
        slots = plain.execute_command("CLUSTER SLOTS")
    return {(n[0].decode(), int(n[1])) for s in slots for n in s[2:]}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_replicas_per_shard_and_test_failover_under_a_cluster_client(ec: Any) -> None:
    ec.create_replication_group(ReplicationGroupId="cl", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumNodeGroups=2, ReplicasPerNodeGroup=1)
    _wait(ec)
    config = _group(ec)["ConfigurationEndpoint"]
    client = RedisCluster(host=config["Address"], port=config["Port"], socket_timeout=2, socket_connect_timeout=1)
    try:
        for i in range(2_000):
            client.set(f"k{i}", i)
        with Writer(client, prefix="a") as writer:
            writer.writing()
            # One more replica in shard 0001 only: met into the cluster, following its shard's
            # primary, with every key, before the group is available again.
            ec.increase_replica_count(ReplicationGroupId="cl", **NOW, ReplicaConfiguration=[
                {"NodeGroupId": "0001", "NewReplicaCount": 2}])
            _wait(ec)
            members = _members(ec)
            assert sorted(members) == ["cl-0001-001", "cl-0001-002", "cl-0001-003", "cl-0002-001", "cl-0002-002"]
            new, primary = members["cl-0001-003"], members["cl-0001-001"]
            assert new["CurrentRole"] == "replica" and new["NodeGroupId"] == "0001"
            with _node(new) as node:
                info = node.info("replication")
                assert (info["master_host"], info["master_port"]) == _address(primary)
                assert info["master_link_status"] == "up"
                assert node.dbsize() >= 1_000  # shard 0001's share of the keys, synced
            _consistent(ec)
            eventually(lambda: _address(new) in _announced(config), 15.0, 0.1, "CLUSTER SLOTS lists the new replica")

            # ReplicasToRemove: forgotten by every node, its process stopped.
            with _node(members["cl-0001-002"]) as node:
                removed_pid = int(node.info("server")["process_id"])
            ec.decrease_replica_count(ReplicationGroupId="cl", ReplicasToRemove=["cl-0001-002"], **NOW)
            _wait(ec)
            assert sorted(_members(ec)) == ["cl-0001-001", "cl-0001-003", "cl-0002-001", "cl-0002-002"]
            _consistent(ec)
            eventually(lambda: _gone(removed_pid), 10.0, 0.05, "the removed replica stopped")
            writer.writing(len(writer.acked) + 100)
        assert writer.acked and all(_retrying(lambda i=i: client.get(f"a{i}")) is not None for i in writer.acked)

        after = {k: m["CurrentRole"] for k, m in _members(ec).items()}
        # TestFailover of one shard: the other shard's primary keeps its role.
        primary = next(k for k, r in after.items() if r == "primary" and k.startswith("cl-0002"))
        ec.test_failover(ReplicationGroupId="cl", NodeGroupId="0002")
        eventually(lambda: _members(ec)[primary]["CurrentRole"] == "replica", 15.0, 0.05, "shard 0002 failed over")
        _wait(ec)
        roles = {k: m["CurrentRole"] for k, m in _members(ec).items()}
        other = next(k for k in roles if k.startswith("cl-0002") and k != primary)
        assert roles[other] == "primary" and roles["cl-0001-003"] == after["cl-0001-003"]
        _consistent(ec)
    finally:
        client.close()
    ec.delete_replication_group(ReplicationGroupId="cl")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
