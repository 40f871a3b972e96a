"""Acceptance for parameter groups on real nodes: a group with `maxmemory-policy allkeys-lru` and
`notify-keyspace-events Ex` attached to a replication group is on every node (CONFIG GET), the one
a TestFailover starts too, with real keyspace notifications; `appendonly` reads pending-reboot
until the reboot, after which the node writes AOF files."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer
from tests.eventually import eventually


def _nodes(ec: Any, group_id: str) -> dict[str, tuple[str, int]]:
    out = {}
    for cluster in ec.describe_cache_clusters(ShowCacheNodeInfo=True)["CacheClusters"]:
        if cluster.get("ReplicationGroupId") == group_id and cluster.get("CacheNodes"):
            endpoint = cluster["CacheNodes"][0]["Endpoint"]
            out[cluster["CacheClusterId"]] = (endpoint["Address"], endpoint["Port"])
    return out


def _group(ec: Any, name: str, family: str, values: dict[str, str]) -> None:
    ec.create_cache_parameter_group(CacheParameterGroupName=name, CacheParameterGroupFamily=family, Description="d")
    ec.modify_cache_parameter_group(CacheParameterGroupName=name, ParameterNameValues=[
        {"ParameterName": k, "ParameterValue": v} for k, v in values.items()])


def _config(address: tuple[str, int], name: str) -> str | None:
    client = redis.Redis(host=address[0], port=address[1], socket_timeout=2, decode_responses=True)
    try:
        return client.config_get(name).get(name)
    except redis.RedisError:
        return None
    finally:
        client.close()


def _available(ec: Any, group_id: str) -> bool:
    group = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0]
    members = group["NodeGroups"][0]["NodeGroupMembers"] if group.get("NodeGroups") else []
    return group["Status"] == "available" and len(members) == 2 and all(m.get("CurrentRole") for m in members)


def test_parameter_group_errors_through_boto3(ec: Any) -> None:
    with pytest.raises(ClientError) as err:
        ec.describe_cache_parameters(CacheParameterGroupName="nope")
    assert err.value.response["Error"]["Code"] == "CacheParameterGroupNotFound"
    ec.create_cache_parameter_group(CacheParameterGroupName="pg", CacheParameterGroupFamily="redis7", Description="d")
    with pytest.raises(ClientError) as err:
        ec.modify_cache_parameter_group(CacheParameterGroupName="pg", ParameterNameValues=[
            {"ParameterName": "maxmemory-policy", "ParameterValue": "sometimes"}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "maxmemory-policy" in err.value.response["Error"]["Message"]
    paginator = ec.get_paginator("describe_engine_default_parameters")
    pages = list(paginator.paginate(CacheParameterGroupFamily="redis7", PaginationConfig={"PageSize": 20}))
    assert len(pages) > 1 and sum(len(p["EngineDefaults"]["Parameters"]) for p in pages) > 40


def test_group_on_every_node_across_failover_and_aof_after_reboot(server: LiveServer, ec: Any) -> None:
    _group(ec, "tuned", "redis7", {"maxmemory-policy": "allkeys-lru", "notify-keyspace-events": "Ex"})
    ec.create_replication_group(ReplicationGroupId="tuned", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True,
                                CacheParameterGroupName="tuned")
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="tuned", WaiterConfig={"Delay": 1})
    nodes = _nodes(ec, "tuned")
    assert len(nodes) == 2
    for address in nodes.values():
        assert _config(address, "maxmemory-policy") == "allkeys-lru"
        assert _config(address, "notify-keyspace-events") in ("xE", "Ex")
    _expiry_is_notified(ec)

    ec.test_failover(ReplicationGroupId="tuned", NodeGroupId="0001")
    eventually(lambda: _available(ec, "tuned") and len(_nodes(ec, "tuned")) == 2, 60.0, 0.2, "the failover done")
    # The old primary's node was replaced by a new one: it has the group's values too.
    for address in _nodes(ec, "tuned").values():
        assert eventually(lambda a=address: _config(a, "maxmemory-policy") == "allkeys-lru", 30.0, 0.1,
                          "the group's policy on every node")
        assert _config(address, "notify-keyspace-events") in ("xE", "Ex")

    ec.modify_cache_parameter_group(CacheParameterGroupName="tuned", ParameterNameValues=[
        {"ParameterName": "appendonly", "ParameterValue": "yes"}])
    member = sorted(nodes)[0]

    def apply_status() -> str:
        cluster = ec.describe_cache_clusters(CacheClusterId=member)["CacheClusters"][0]
        return str(cluster["CacheParameterGroup"]["ParameterApplyStatus"])

    eventually(lambda: apply_status() == "pending-reboot", 30.0, 0.1, "appendonly pending a reboot")
    address = _nodes(ec, "tuned")[member]
    assert _config(address, "appendonly") == "no"
    ec.reboot_cache_cluster(CacheClusterId=member, CacheNodeIdsToReboot=["0001"])
    eventually(lambda: apply_status() == "in-sync" and _config(address, "appendonly") == "yes", 60.0, 0.2,
               "the rebooted node running with AOF")
    if server.runtime == "process":  # the node's files are on this machine
        node_dir = server.data_dir / "nodes" / f"123456789012-us-east-1-{member}-0001"
        assert eventually(lambda: any((node_dir / "appendonlydir").glob("*.aof")), 10.0, 0.1, "AOF files")


def _expiry_is_notified(ec: Any) -> None:
    """notify-keyspace-events Ex: an expired key is published on the primary."""
    endpoint = ec.describe_replication_groups(ReplicationGroupId="tuned")["ReplicationGroups"][0]["NodeGroups"][0][
        "PrimaryEndpoint"]
    client = redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=2, decode_responses=True)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe("__keyevent@0__:expired")
        client.set("soon", "gone", px=20)

        def notified() -> bool:
            message = pubsub.get_message(timeout=0.1)
            return bool(message and message["type"] == "message" and message["data"] == "soon")

        assert eventually(notified, 10.0, 0.01, "the expiry notification")
    finally:
        pubsub.close()
        client.close()


def test_memcached_takes_its_group_options_at_start(ec: Any) -> None:
    _group(ec, "big-items", "memcached1.6", {"max_item_size": "2097152", "hash_algorithm": "murmur3"})
    ec.create_cache_cluster(CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
                            NumCacheNodes=1, CacheParameterGroupName="big-items")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="mc", WaiterConfig={"Delay": 1})
    node = ec.describe_cache_clusters(CacheClusterId="mc", ShowCacheNodeInfo=True)["CacheClusters"][0]["CacheNodes"][0]
    settings = _memcached_settings(node["Endpoint"]["Address"], node["Endpoint"]["Port"])
    assert settings["item_size_max"] == "2097152" and settings["hash_algorithm"] == "murmur3"


def _memcached_settings(host: str, port: int) -> dict[str, str]:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b"stats settings\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return {parts[1]: parts[2] for parts in (line.split(" ", 2) for line in data.decode().splitlines())
            if len(parts) == 3 and parts[0] == "STAT"}
