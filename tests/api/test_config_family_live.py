"""The configuration family through boto3 and the aws cli against a live server: node-type
modifications, reserved nodes, engine versions, cache security groups as AWS answers them, the
14 days of events, the Version parameter on the wire, and the AWS-faithful details of issue 14:
AWS's release of the engine line, the default subnet group, and a planned change's events."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 150}


def _code(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**params)
    return str(err.value.response["Error"]["Code"])


def test_configuration_family_through_boto3(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="sized", Engine="redis", CacheNodeType="cache.t3.small", NumCacheNodes=1)
    allowed = ec.list_allowed_node_type_modifications(CacheClusterId="sized")
    assert "cache.t3.medium" in allowed["ScaleUpModifications"]
    assert "cache.t3.micro" in allowed["ScaleDownModifications"]
    offerings = ec.describe_reserved_cache_nodes_offerings(CacheNodeType="cache.t3.micro", Duration="1",
                                                           OfferingType="No Upfront", ProductDescription="redis")
    offering = offerings["ReservedCacheNodesOfferings"][0]["ReservedCacheNodesOfferingId"]
    bought = ec.purchase_reserved_cache_nodes_offering(ReservedCacheNodesOfferingId=offering,
                                                       ReservedCacheNodeId="ri-live", CacheNodeCount=2)
    assert bought["ReservedCacheNode"]["State"] == "payment-pending"
    assert ec.describe_reserved_cache_nodes()["ReservedCacheNodes"][0]["ReservedCacheNodeId"] == "ri-live"
    assert _code(ec.purchase_reserved_cache_nodes_offering, ReservedCacheNodesOfferingId=offering,
                 ReservedCacheNodeId="ri-live") == "ReservedCacheNodeAlreadyExists"
    assert _code(ec.create_cache_security_group, CacheSecurityGroupName="sg",
                 Description="d") == "InvalidParameterValue"
    assert ec.describe_cache_security_groups()["CacheSecurityGroups"] == []
    assert _code(ec.describe_events, Duration=20161) == "InvalidParameterValue"
    versions = ec.describe_cache_engine_versions(Engine="redis", EngineVersion="6.0", DefaultOnly=True)
    assert [v["EngineVersion"] for v in versions["CacheEngineVersions"]] == ["6.2"]
    # The aws cli reads the same answers.
    listed = server.aws("describe-reserved-cache-nodes", "--reserved-cache-node-id", "ri-live")
    assert listed["ReservedCacheNodes"][0]["CacheNodeCount"] == 2
    assert server.aws("describe-cache-subnet-groups")["CacheSubnetGroups"][0]["CacheSubnetGroupName"] == "default"


@pytest.mark.parametrize(("query", "version"), [("&Version=2014-09-30", "2014-09-30"), ("", "NO_VERSION_SPECIFIED")])
def test_another_api_version_on_the_wire(server: LiveServer, query: str, version: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/?Action=DescribeCacheClusters" + query, timeout=10)
    body = err.value.read().decode()
    assert err.value.code == 400 and "<Code>InvalidAction</Code>" in body
    assert f"Could not find operation DescribeCacheClusters for version {version}" in body


def _messages(ec: Any, cluster: str) -> list[str]:
    return [e["Message"] for e in ec.describe_events(SourceType="cache-cluster", SourceIdentifier=cluster)["Events"]]


def test_release_subnet_group_and_a_planned_change_through_boto3(server: LiveServer, ec: Any) -> None:
    made = ec.create_cache_cluster(CacheClusterId="rel", Engine="redis", EngineVersion="7.1",
                                   CacheNodeType="cache.t3.micro", NumCacheNodes=1)["CacheCluster"]
    assert (made["EngineVersion"], made["CacheSubnetGroupName"]) == ("7.1.0", "default")
    ec.create_cache_cluster(CacheClusterId="relmc", Engine="memcached", EngineVersion="1.6.22",
                            CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="rel", WaiterConfig=FAST)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="relmc", WaiterConfig=FAST)
    shown = ec.describe_cache_clusters(CacheClusterId="rel")["CacheClusters"][0]
    assert (shown["EngineVersion"], shown["CacheSubnetGroupName"]) == ("7.1.0", "default")
    assert ec.describe_cache_clusters(CacheClusterId="relmc")["CacheClusters"][0]["EngineVersion"] == "1.6.22"
    # What really runs is said: in an event and in the JSON API.
    [node] = server.admin("GET", "/api/v1/nodes?cluster=rel")["nodes"]
    running = node["running_version"]
    assert node["engine_version"] == "7.1.0" and running and running.count(".") == 2
    assert any(m.startswith("Engine version 7.1.0 ") and f"redis {running}" in m for m in _messages(ec, "rel"))
    assert _code(ec.modify_cache_cluster, CacheClusterId="rel", EngineVersion="7.0") == "InvalidParameterCombination"
    assert _code(ec.modify_cache_cluster, CacheClusterId="rel", CacheNodeType="cache.t1.micro",
                 ApplyImmediately=True) == "InvalidParameterCombination"
    # A planned node type change restarts the real node, and reads as AWS writes it.
    ec.modify_cache_cluster(CacheClusterId="rel", CacheNodeType="cache.t3.small", ApplyImmediately=True)
    done = "Succeeded applying modification to cache node type to cache.t3.small."
    def completed() -> list[str] | None:
        found = _messages(ec, "rel")
        return found if done in found else None

    messages = eventually(completed, timeout=60, message="the node type change's completion event")
    assert messages[-3:] == ["Cache node 0001 shutdown", "Cache node 0001 restarted", done], messages
    assert not [m for m in messages if "ecover" in m], messages
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="rel", WaiterConfig=FAST)
    assert ec.describe_cache_clusters(CacheClusterId="rel")["CacheClusters"][0]["CacheNodeType"] == "cache.t3.small"
