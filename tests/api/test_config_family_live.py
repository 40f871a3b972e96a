"""The configuration family through boto3 and the aws cli against a live server: node-type
modifications, reserved nodes, engine versions, cache security groups as AWS answers them, the
14 days of events, and the Version parameter on the wire."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer


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
