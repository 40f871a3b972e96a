"""AWS-faithful details: the Version parameter, NumCacheNodes' message for the value given, the
default subnet group, and node type changes limited to what ListAllowedNodeTypeModifications offers."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest

from controlplane.query import Identity
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World


def _send(world: World, pairs: list[tuple[str, str]]) -> tuple[int, str, str]:
    status, body = world.service.query.dispatch(pairs, Identity("123456789012", "us-east-1"), "r")
    root = ElementTree.fromstring(body)
    code, message = root.find(".//{*}Code"), root.find(".//{*}Message")
    return status, code.text or "" if code is not None else "", message.text or "" if message is not None else ""


@pytest.mark.parametrize(("version", "shown"), [
    ([("Version", "2014-09-30")], "2014-09-30"),
    ([("Version", "")], "NO_VERSION_SPECIFIED"),
    ([], "NO_VERSION_SPECIFIED"),
])
def test_another_version_or_none_is_refused_as_aws_does(world: World, version: list[tuple[str, str]],
                                                        shown: str) -> None:
    pairs = [("Action", "CreateCacheCluster"), *version, ("CacheClusterId", "web"), ("Engine", "redis"),
             ("CacheNodeType", "cache.t3.micro")]
    status, code, message = _send(world, pairs)
    assert (status, code) == (400, "InvalidAction")
    assert message == f"Could not find operation CreateCacheCluster for version {shown}"
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []  # nothing was created
    status, code, _ = _send(world, [("Action", "DescribeCacheClusters"), ("Version", "2015-02-02")])
    assert (status, code) == (200, "")


@pytest.mark.parametrize(("count", "expected"), [
    (0, "Invalid NumCacheNodes: 0. The number of cache nodes must be at least 1."),
    (-3, "Invalid NumCacheNodes: -3. The number of cache nodes must be at least 1."),
    (2, "Cannot create a Redis cluster with a NumCacheNodes parameter greater than 1."),
])
def test_num_cache_nodes_message_fits_the_value(world: World, count: int, expected: str) -> None:
    params: dict[str, Any] = {"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
                              "NumCacheNodes": count}
    with pytest.raises(ApiError) as err:
        world.call("CreateCacheCluster", **params)
    assert (err.value.code, err.value.message) == ("InvalidParameterValue", expected)


def test_a_cache_without_a_subnet_group_is_in_default(world: World) -> None:
    made = world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis",
                      CacheNodeType="cache.t3.micro")["CacheCluster"]
    assert made["CacheSubnetGroupName"] == "default"
    world.settle()
    cluster = world.call("DescribeCacheClusters", CacheClusterId="web", ShowCacheNodeInfo=True)["CacheClusters"][0]
    [default] = world.call("DescribeCacheSubnetGroups", CacheSubnetGroupName="default")["CacheSubnetGroups"]
    zones = {s["SubnetAvailabilityZone"]["Name"] for s in default["Subnets"]}
    assert cluster["CacheSubnetGroupName"] == "default"
    assert cluster["CacheNodes"][0]["CustomerAvailabilityZone"] in zones  # placed in the default group's zones
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="s")
    world.settle()
    [snapshot] = world.call("DescribeSnapshots", SnapshotName="s")["Snapshots"]
    assert (snapshot["CacheSubnetGroupName"], snapshot["VpcId"]) == ("default", default["VpcId"])


@pytest.mark.parametrize("wanted", ["cache.t4g.micro", "cache.t1.micro", "cache.r6gd.xlarge"])
def test_node_type_changes_are_those_list_allowed_offers(world: World, wanted: str) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
               CacheNodeType="cache.t3.micro", NumCacheClusters=2)
    world.settle()
    allowed = world.call("ListAllowedNodeTypeModifications", CacheClusterId="web")
    assert wanted not in allowed["ScaleUpModifications"] + allowed["ScaleDownModifications"]
    for operation, key in (("ModifyCacheCluster", {"CacheClusterId": "web"}),
                           ("ModifyReplicationGroup", {"ReplicationGroupId": "rg"})):
        with pytest.raises(ApiError) as err:
            world.call(operation, CacheNodeType=wanted, ApplyImmediately=True, **key)
        assert (err.value.code, err.value.message) == (
            "InvalidParameterCombination", f"Cannot modify cache node type from cache.t3.micro to {wanted}: it is not "
            "among the node types ListAllowedNodeTypeModifications lists for this cache.")
    assert world.call("DescribeCacheClusters", CacheClusterId="web")["CacheClusters"][0]["CacheNodeType"] == \
        "cache.t3.micro"  # nothing changed
    up = world.call("ModifyCacheCluster", CacheClusterId="web", CacheNodeType=allowed["ScaleUpModifications"][0])
    assert up["CacheCluster"]["PendingModifiedValues"] == {"CacheNodeType": allowed["ScaleUpModifications"][0]}
