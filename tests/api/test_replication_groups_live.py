"""Replication groups with real redis nodes: replication, floating endpoints, and failover
under a writing client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from tests.api.conftest import LiveServer
from tests.api.writer import kill_primary_under_writer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 150}


def _group(ec: Any, group_id: str = "rg") -> dict[str, Any]:
    return dict(ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0])


def _members(ec: Any) -> dict[str, dict[str, Any]]:
    return {m["CacheClusterId"]: m for m in _group(ec)["NodeGroups"][0]["NodeGroupMembers"]}


def _client(endpoint: dict[str, Any]) -> redis.Redis:
    return redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=1, socket_connect_timeout=1)


def test_replication_and_endpoints(ec: Any) -> None:
    ec.create_replication_group(ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=3, AutomaticFailoverEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    ng = _group(ec)["NodeGroups"][0]
    primary = _client(ng["PrimaryEndpoint"])
    primary.set("k", "v")
    assert primary.info("replication")["role"] == "master"
    assert primary.info("replication")["connected_slaves"] == 2
    reader = _client(ng["ReaderEndpoint"])
    assert reader.info("replication")["role"] == "slave"
    for member in ng["NodeGroupMembers"]:
        node = _client(member["ReadEndpoint"])
        expected = "master" if member["CurrentRole"] == "primary" else "slave"
        assert node.info("replication")["role"] == expected
        # Replication is asynchronous: bounded wait.
        eventually(lambda: node.get("k") == b"v", 2.0, 0.01, "the replica has k")  # noqa: B023 - called at once
    zones = {m["PreferredAvailabilityZone"] for m in ng["NodeGroupMembers"]}
    assert len(zones) == 3
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    assert ec.describe_cache_clusters()["CacheClusters"] == []


def test_kill_9_of_the_primary_under_a_writer(ec: Any) -> None:
    ec.create_replication_group(ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=3, AutomaticFailoverEnabled=True,
                                MultiAZEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    endpoint = _group(ec)["NodeGroups"][0]["PrimaryEndpoint"]
    client = _client(endpoint)
    old_pid = kill_primary_under_writer(client)  # writes resume through the same endpoint address
    assert client.info("server")["process_id"] != old_pid
    roles = {k: m["CurrentRole"] for k, m in _members(ec).items()}
    assert roles["rg-001"] == "replica" and sorted(roles.values()) == ["primary", "replica", "replica"]
    messages = [e["Message"] for e in ec.describe_events(SourceType="replication-group",
                                                         SourceIdentifier="rg")["Events"]]
    assert any(m.startswith("Failover from primary node rg-001 to replica node") for m in messages)
    # The failed node is back as a replica of the new primary, within 10 s.
    old = _client(_members(ec)["rg-001"]["ReadEndpoint"])

    def replica_again() -> bool:
        try:
            info = old.info("replication")
        except redis.RedisError:
            return False
        return bool(info["role"] == "slave" and info["master_link_status"] == "up")

    eventually(replica_again, 10.0, 0.05, "rg-001 a replica with its link up")
    assert old.info("replication")["master_link_status"] == "up"
    assert _group(ec)["Status"] == "available"
    # The recovery event follows the node's readiness by a moment: bounded wait.
    def recovery_finished() -> list[str]:
        cluster_events = [e["Message"] for e in ec.describe_events(SourceType="cache-cluster",
                                                                   SourceIdentifier="rg-001")["Events"]]
        assert cluster_events[-1:] == ["Finished recovery for cache nodes 0001"], cluster_events
        return cluster_events

    cluster_events = eventually(recovery_finished, 10.0, 0.05, "the recovery event")
    assert cluster_events[-2:] == ["Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"]


def test_aws_cli_test_failover(server: LiveServer, ec: Any) -> None:
    ec.create_replication_group(ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", ReplicasPerNodeGroup=1, AutomaticFailoverEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    endpoint = _group(ec)["NodeGroups"][0]["PrimaryEndpoint"]
    primary = _client(endpoint)
    primary.set("before", "1")
    assert primary.wait(1, 2000) == 1  # the replica has it: a test failover kills the primary
    aws = [str(Path(sys.executable).with_name("aws")), "elasticache", "--endpoint-url", server.url, "--output", "json"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run([*aws, "test-failover", "--replication-group-id", "rg", "--node-group-id", "0001"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ReplicationGroup"]["Status"] == "available"
    waited = subprocess.run([*aws, "wait", "replication-group-available", "--replication-group-id", "rg"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert waited.returncode == 0, waited.stderr
    eventually(lambda: _members(ec)["rg-002"]["CurrentRole"] == "primary", 10.0, 0.05, "rg-002 the primary")
    assert _members(ec)["rg-002"]["CurrentRole"] == "primary"
    client = _client(endpoint)
    assert client.info("replication")["role"] == "master"
    assert client.get("before") == b"1"
    assert client.set("after", "2")


def test_valkey_group_fails_over(ec: Any, server: LiveServer) -> None:
    ec.create_replication_group(ReplicationGroupId="vk", ReplicationGroupDescription="d", Engine="valkey",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="vk", WaiterConfig=FAST)
    group = _group(ec, "vk")
    assert group["Engine"] == "valkey"
    member = ec.describe_cache_clusters(CacheClusterId="vk-001")["CacheClusters"][0]
    assert member["Engine"] == "valkey" and member["EngineVersion"].startswith("8.")
    client = _client(group["NodeGroups"][0]["PrimaryEndpoint"])
    assert "valkey_version" in client.info("server")
    client.set("k", "v")
    ec.test_failover(ReplicationGroupId="vk", NodeGroupId="0001")
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="vk", WaiterConfig=FAST)
    def failed_over() -> dict[str, str]:
        roles = {m["CacheClusterId"]: m["CurrentRole"] for m in _group(ec, "vk")["NodeGroups"][0]["NodeGroupMembers"]}
        assert roles.get("vk-002") == "primary" and _group(ec, "vk")["Status"] == "available", roles
        return roles

    roles = eventually(failed_over, 10.0, 0.05, "vk-002 the primary of an available group")
    assert roles["vk-002"] == "primary"
    assert client.get("k") == b"v"
