"""Cache subnet groups: AWS's validation and errors, the subnet -> zone rule, tags, and placement
of a cache's nodes over its subnet group's zones (fake runtime)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.state.subnet_groups import subnet_zone
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

THREE = ["subnet-a-us-east-1a", "subnet-b-us-east-1b", "subnet-c-us-east-1c"]
REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
ARN = "arn:aws:elasticache:us-east-1:123456789012:subnetgroup:{}"


def _create(world: World, name: str = "sg", subnets: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return world.call("CreateCacheSubnetGroup", CacheSubnetGroupName=name, CacheSubnetGroupDescription="d",
                      SubnetIds=subnets or THREE, **extra)["CacheSubnetGroup"]


def _fails(world: World, code: str, operation: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


def test_subnet_zone_rule() -> None:
    assert subnet_zone("us-east-1", "subnet-x-us-east-1d") == "us-east-1d"
    # Any other id: a stable zone of the region, the same every time.
    zone = subnet_zone("us-east-1", "subnet-0123456789abcdef0")
    assert zone in [f"us-east-1{c}" for c in "abcdef"]
    assert subnet_zone("us-east-1", "subnet-0123456789abcdef0") == zone
    assert len({subnet_zone("us-east-1", f"subnet-{i:08x}") for i in range(60)}) == 6


def test_create_describe_modify_delete(world: World) -> None:
    made = _create(world, "Web-Subnets", Tags=[{"Key": "team", "Value": "a"}])
    assert made["CacheSubnetGroupName"] == "web-subnets"
    assert [s["SubnetAvailabilityZone"]["Name"] for s in made["Subnets"]] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert made["VpcId"].startswith("vpc-") and made["ARN"] == ARN.format("web-subnets")
    names = [g["CacheSubnetGroupName"] for g in world.call("DescribeCacheSubnetGroups")["CacheSubnetGroups"]]
    assert names == ["default", "web-subnets"]
    assert world.call("ListTagsForResource", ResourceName=ARN.format("web-subnets"))["TagList"] == [
        {"Key": "team", "Value": "a"}]
    changed = world.call("ModifyCacheSubnetGroup", CacheSubnetGroupName="web-subnets",
                         CacheSubnetGroupDescription="new", SubnetIds=["subnet-z-us-east-1d"])["CacheSubnetGroup"]
    assert changed["CacheSubnetGroupDescription"] == "new"
    assert [s["SubnetIdentifier"] for s in changed["Subnets"]] == ["subnet-z-us-east-1d"]
    world.call("DeleteCacheSubnetGroup", CacheSubnetGroupName="web-subnets")
    _fails(world, "CacheSubnetGroupNotFoundFault", "DescribeCacheSubnetGroups", CacheSubnetGroupName="web-subnets")


def test_default_group_is_built_in(world: World) -> None:
    default = world.call("DescribeCacheSubnetGroups", CacheSubnetGroupName="default")["CacheSubnetGroups"][0]
    assert len(default["Subnets"]) == 6  # one per zone of us-east-1
    world.call("AddTagsToResource", ResourceName=ARN.format("default"), Tags=[{"Key": "k", "Value": "v"}])
    _fails(world, "InvalidParameterValue", "DeleteCacheSubnetGroup", CacheSubnetGroupName="default")
    _fails(world, "InvalidParameterValue", "ModifyCacheSubnetGroup", CacheSubnetGroupName="default",
           CacheSubnetGroupDescription="x")
    _fails(world, "CacheSubnetGroupAlreadyExists", "CreateCacheSubnetGroup", CacheSubnetGroupName="default",
           CacheSubnetGroupDescription="d", SubnetIds=THREE)
    world.call("CreateCacheCluster", CacheClusterId="web", CacheSubnetGroupName="default", **REDIS)


@pytest.mark.parametrize(("params", "code"), [
    ({"CacheSubnetGroupName": "bad_name"}, "InvalidParameterValue"),
    ({"CacheSubnetGroupName": "x" * 256}, "InvalidParameterValue"),
    ({"SubnetIds": ["sn-123"]}, "InvalidSubnet"),
    ({"SubnetIds": [f"subnet-{i}" for i in range(21)]}, "CacheSubnetQuotaExceededFault"),
    ({"CacheSubnetGroupDescription": " "}, "InvalidParameterValue"),
])
def test_create_refusals(world: World, params: dict[str, Any], code: str) -> None:
    request = {"CacheSubnetGroupName": "sg", "CacheSubnetGroupDescription": "d", "SubnetIds": THREE, **params}
    _fails(world, code, "CreateCacheSubnetGroup", **request)
    assert [g["CacheSubnetGroupName"] for g in world.call("DescribeCacheSubnetGroups")["CacheSubnetGroups"]] == [
        "default"]


def test_already_exists_and_quota(world: World) -> None:
    _create(world)
    _fails(world, "CacheSubnetGroupAlreadyExists", "CreateCacheSubnetGroup", CacheSubnetGroupName="SG",
           CacheSubnetGroupDescription="d", SubnetIds=THREE)
    for i in range(48):
        _create(world, f"g{i}")
    _fails(world, "CacheSubnetGroupQuotaExceeded", "CreateCacheSubnetGroup", CacheSubnetGroupName="one-more",
           CacheSubnetGroupDescription="d", SubnetIds=THREE)


def test_in_use_group_and_subnets(world: World) -> None:
    _create(world)
    world.call("CreateCacheCluster", CacheClusterId="web", CacheSubnetGroupName="sg",
               PreferredAvailabilityZone="us-east-1b", **REDIS)
    world.settle()
    _fails(world, "CacheSubnetGroupInUse", "DeleteCacheSubnetGroup", CacheSubnetGroupName="sg")
    _fails(world, "SubnetInUse", "ModifyCacheSubnetGroup", CacheSubnetGroupName="sg",
           SubnetIds=["subnet-a-us-east-1a"])
    # Another subnet in the same zone keeps the zone: the old one may go.
    world.call("ModifyCacheSubnetGroup", CacheSubnetGroupName="sg",
               SubnetIds=["subnet-a-us-east-1a", "subnet-b2-us-east-1b"])


def test_unknown_group_and_zone_outside_it(world: World) -> None:
    _fails(world, "CacheSubnetGroupNotFoundFault", "CreateReplicationGroup", ReplicationGroupId="rg",
           ReplicationGroupDescription="d", CacheSubnetGroupName="nope", **REDIS)
    _create(world, subnets=THREE[:2])
    message = _fails(world, "InvalidParameterValue", "CreateCacheCluster", CacheClusterId="web",
                     CacheSubnetGroupName="sg", PreferredAvailabilityZone="us-east-1c", **REDIS)
    assert "us-east-1c" in message
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def _zones(world: World, cluster: str) -> list[str]:
    nodes = world.call("DescribeCacheClusters", CacheClusterId=cluster, ShowCacheNodeInfo=True)["CacheClusters"][0]
    return [n["CustomerAvailabilityZone"] for n in nodes["CacheNodes"]]


def test_replication_group_spread_one_node_per_zone(world: World) -> None:
    _create(world)
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d",
               NumCacheClusters=3, AutomaticFailoverEnabled=True, MultiAZEnabled=True, CacheSubnetGroupName="sg",
               **REDIS)
    world.settle()
    zones = sorted(z for i in (1, 2, 3) for z in _zones(world, f"rg-00{i}"))
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1c"]
    member = world.call("DescribeCacheClusters", CacheClusterId="rg-001")["CacheClusters"][0]
    assert member["CacheSubnetGroupName"] == "sg"
    # A replica added later goes to the group's least used zone, never outside it.
    world.call("IncreaseReplicaCount", ReplicationGroupId="rg", NewReplicaCount=3, ApplyImmediately=True)
    world.settle()
    assert _zones(world, "rg-004")[0] in ("us-east-1a", "us-east-1b", "us-east-1c")


def test_memcached_cross_az_over_the_group(world: World) -> None:
    _create(world, subnets=THREE[1:])
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=4, AZMode="cross-az", CacheSubnetGroupName="sg")
    world.settle()
    assert sorted(_zones(world, "mc")) == ["us-east-1b", "us-east-1b", "us-east-1c", "us-east-1c"]
    world.call("CreateCacheCluster", CacheClusterId="one", CacheSubnetGroupName="sg", **REDIS)
    world.settle()
    assert _zones(world, "one")[0] in ("us-east-1b", "us-east-1c")
