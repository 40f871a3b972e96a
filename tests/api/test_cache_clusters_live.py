"""boto3, the aws cli, redis-py and pymemcache against a live server with real nodes."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError
from pymemcache.client.base import Client as Memcache

from tests.api.conftest import LiveServer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 100}


def _nodes(ec: Any, cluster_id: str) -> list[dict[str, Any]]:
    cluster = ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0]
    return list(cluster["CacheNodes"])


def test_redis_cluster_with_boto3_and_waiters(ec: Any) -> None:
    created = ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
                                      NumCacheNodes=1, EngineVersion="7.0")
    assert created["CacheCluster"]["CacheClusterStatus"] == "creating"
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    (node,) = _nodes(ec, "web")
    r = redis.Redis(host=node["Endpoint"]["Address"], port=node["Endpoint"]["Port"], socket_timeout=2)
    assert r.set("k", "v") and r.get("k") == b"v"
    info = r.info()
    assert info["redis_version"].startswith("7.0")
    assert int(r.config_get("maxmemory")["maxmemory"]) == 512 * 1024 * 1024  # cache.t3.micro

    deleting = ec.delete_cache_cluster(CacheClusterId="web")["CacheCluster"]
    assert deleting["CacheClusterStatus"] == "deleting"
    ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="web", WaiterConfig=FAST)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=node["Endpoint"]["Address"], port=node["Endpoint"]["Port"], socket_timeout=1).ping()


def test_aws_cli_session_as_documented(server: LiveServer, ec: Any) -> None:
    run = server.aws

    run("create-cache-cluster", "--cache-cluster-id", "web", "--engine", "redis", "--cache-node-type",
        "cache.t3.micro", "--num-cache-nodes", "1")
    run("wait", "cache-cluster-available", "--cache-cluster-id", "web")
    described = run("describe-cache-clusters", "--show-cache-node-info")
    endpoint = described["CacheClusters"][0]["CacheNodes"][0]["Endpoint"]
    cli = subprocess.run(["redis-cli", "-h", endpoint["Address"], "-p", str(endpoint["Port"]), "set", "k", "v"],
                         capture_output=True, text=True, timeout=10)
    assert cli.stdout.strip() == "OK"


def test_memcached_cluster_nodes_and_configuration_endpoint(ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.small",
                            NumCacheNodes=2, AZMode="cross-az")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="mc", WaiterConfig=FAST)
    cluster = ec.describe_cache_clusters(CacheClusterId="mc", ShowCacheNodeInfo=True)["CacheClusters"][0]
    assert cluster["PreferredAvailabilityZone"] == "Multiple"
    for node in cluster["CacheNodes"]:
        mc = Memcache((node["Endpoint"]["Address"], node["Endpoint"]["Port"]), timeout=2)
        assert mc.set("k", b"v") and mc.get("k") == b"v"
        stats = mc.stats("settings")
        assert int(stats[b"maxbytes"]) == int(1.37 * 1024) * 1024 * 1024  # cache.t3.small
        mc.close()
    cfg = cluster["ConfigurationEndpoint"]
    import socket

    with socket.create_connection((cfg["Address"], cfg["Port"]), timeout=2) as s:
        s.sendall(b"config get cluster\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += s.recv(4096)
    lines = data.split(b"\r\n")[1].split(b"\n")
    assert lines[0] == b"1"
    members = {m.split(b"|")[1].decode() + ":" + m.split(b"|")[2].decode() for m in lines[1].split()}
    assert members == {f"{n['Endpoint']['Address']}:{n['Endpoint']['Port']}" for n in cluster["CacheNodes"]}

    ec.modify_cache_cluster(CacheClusterId="mc", NumCacheNodes=3, ApplyImmediately=True)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="mc", WaiterConfig=FAST)
    nodes = _nodes(ec, "mc")
    assert len(nodes) == 3
    mc = Memcache((nodes[2]["Endpoint"]["Address"], nodes[2]["Endpoint"]["Port"]), timeout=2)
    assert mc.version()
    mc.close()


def test_reboot_really_restarts_the_node(ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    (node,) = _nodes(ec, "web")
    r = redis.Redis(host=node["Endpoint"]["Address"], port=node["Endpoint"]["Port"], socket_timeout=2)
    run_id = r.info("server")["run_id"]
    out = ec.reboot_cache_cluster(CacheClusterId="web", CacheNodeIdsToReboot=["0001"])
    assert out["CacheCluster"]["CacheClusterStatus"] == "rebooting cache cluster nodes"
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    assert r.info("server")["run_id"] != run_id
    messages = [e["Message"] for e in ec.describe_events(SourceType="cache-cluster", SourceIdentifier="web")["Events"]]
    assert "Cache node 0001 restarted" in messages


def test_port_is_honoured(ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", Port=7000)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    (node,) = _nodes(ec, "web")
    assert node["Endpoint"]["Port"] == 7000
    assert redis.Redis(host=node["Endpoint"]["Address"], port=7000, socket_timeout=2).ping()


def test_errors_have_model_codes_and_statuses(ec: Any) -> None:
    with pytest.raises(ClientError) as err:
        ec.describe_cache_clusters(CacheClusterId="nope")
    assert err.value.response["Error"]["Code"] == "CacheClusterNotFound"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert err.value.response["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as err:
        ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=3)
    assert err.value.response["Error"]["Message"] == (
        "Cannot create a Redis cluster with a NumCacheNodes parameter greater than 1.")


def test_service_restart_keeps_clusters_tags_events_and_nodes(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
                            Tags=[{"Key": "team", "Value": "core"}])
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    (node,) = _nodes(ec, "web")
    r = redis.Redis(host=node["Endpoint"]["Address"], port=node["Endpoint"]["Port"], socket_timeout=2)
    r.set("survives", "yes")
    pid = r.info("server")["process_id"]

    server.stop()
    assert r.get("survives") == b"yes"  # nodes keep running while the API is down
    server.start()

    cluster = ec.describe_cache_clusters(CacheClusterId="web", ShowCacheNodeInfo=True)["CacheClusters"][0]
    assert cluster["CacheClusterStatus"] == "available"
    assert ec.list_tags_for_resource(ResourceName=cluster["ARN"])["TagList"] == [{"Key": "team", "Value": "core"}]
    messages = [e["Message"] for e in ec.describe_events(SourceType="cache-cluster", SourceIdentifier="web")["Events"]]
    assert "Cache cluster created" in messages
    assert r.info("server")["process_id"] == pid  # re-adopted, not restarted
    # The re-adopted node is watched: killing it is noticed and it is recovered.
    os.kill(pid, 9)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)

    def recovery_finished() -> bool:
        messages = [e["Message"] for e in
                    ec.describe_events(SourceType="cache-cluster", SourceIdentifier="web")["Events"]]
        assert "Finished recovery for cache nodes 0001" in messages, messages
        return True

    eventually(recovery_finished, 10.0, 0.05, "the recovery event")
    assert r.ping()


def test_moto_reset_path(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(server.url + "/moto-api/reset", method="POST"), timeout=60).read()
    assert ec.describe_cache_clusters()["CacheClusters"] == []


def test_get_query_and_region_scoping(server: LiveServer, ec: Any) -> None:
    import urllib.request

    body = urllib.request.urlopen(server.url + "/?Action=DescribeCacheClusters&Version=2015-02-02", timeout=5)
    assert body.headers["x-amzn-RequestId"]
    assert b"<DescribeCacheClustersResponse" in body.read()
    west = server.client(region_name="us-west-2")
    west.create_cache_cluster(CacheClusterId="w", Engine="redis", CacheNodeType="cache.t3.micro")
    assert ec.describe_cache_clusters()["CacheClusters"] == []
    assert west.describe_cache_clusters()["CacheClusters"][0]["ARN"].startswith("arn:aws:elasticache:us-west-2:")
    west.get_waiter("cache_cluster_available").wait(CacheClusterId="w", WaiterConfig=FAST)
