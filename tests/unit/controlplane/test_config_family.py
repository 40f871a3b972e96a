"""ListAllowedNodeTypeModifications, reserved cache nodes (offerings, purchases, states, tags),
DescribeCacheEngineVersions' DefaultOnly, and cache security groups answered as AWS answers
them in an account with a VPC (fake runtime)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controlplane.state.reserved import OFFERINGS
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.m6g.large"}


def _fails(world: World, code: str, operation: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


# ---- ListAllowedNodeTypeModifications --------------------------------------------------------


def test_scale_up_and_down_lists(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    out = world.call("ListAllowedNodeTypeModifications", CacheClusterId="web")
    up, down = out["ScaleUpModifications"], out["ScaleDownModifications"]
    assert "cache.r6g.large" in up and "cache.m6g.xlarge" in up and "cache.t3.micro" in down
    assert "cache.m6g.large" not in up + down
    assert not [t for t in up + down if t.startswith(("cache.t1.", "cache.m1.", "cache.r6gd."))]
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d",
               Engine="redis", CacheNodeType="cache.r6gd.xlarge")
    tiering = world.call("ListAllowedNodeTypeModifications", ReplicationGroupId="rg")
    assert tiering["ScaleDownModifications"] == []
    assert tiering["ScaleUpModifications"][0] == "cache.r6gd.2xlarge"
    assert all(t.startswith("cache.r6gd.") for t in tiering["ScaleUpModifications"])
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro")
    assert world.call("ListAllowedNodeTypeModifications", CacheClusterId="mc") == {
        "ScaleUpModifications": [], "ScaleDownModifications": []}


def test_allowed_modifications_errors(world: World) -> None:
    _fails(world, "InvalidParameterCombination", "ListAllowedNodeTypeModifications")
    _fails(world, "InvalidParameterCombination", "ListAllowedNodeTypeModifications", CacheClusterId="a",
           ReplicationGroupId="b")
    _fails(world, "CacheClusterNotFound", "ListAllowedNodeTypeModifications", CacheClusterId="nope")
    _fails(world, "ReplicationGroupNotFoundFault", "ListAllowedNodeTypeModifications", ReplicationGroupId="nope")


# ---- reserved cache nodes ---------------------------------------------------------------------


def test_offerings_filters_and_paging(world: World) -> None:
    first = world.call("DescribeReservedCacheNodesOfferings", MaxRecords=20)
    assert len(first["ReservedCacheNodesOfferings"]) == 20 and "Marker" in first
    every = world.call("DescribeReservedCacheNodesOfferings")["ReservedCacheNodesOfferings"]
    assert len(every) == len(OFFERINGS)
    three = world.call("DescribeReservedCacheNodesOfferings", CacheNodeType="cache.r6g.large", Duration="3",
                       ProductDescription="redis", OfferingType="All Upfront")["ReservedCacheNodesOfferings"]
    assert len(three) == 1 and three[0]["Duration"] == 94608000 and three[0]["FixedPrice"] > 0
    assert three[0]["RecurringCharges"] == []
    no_upfront = world.call("DescribeReservedCacheNodesOfferings", Duration="31536000",
                            OfferingType="No Upfront", CacheNodeType="cache.t3.micro",
                            ProductDescription="memcached")["ReservedCacheNodesOfferings"][0]
    assert no_upfront["FixedPrice"] == 0 and no_upfront["RecurringCharges"][0]["RecurringChargeFrequency"] == "Hourly"
    _fails(world, "InvalidParameterValue", "DescribeReservedCacheNodesOfferings", Duration="2")
    _fails(world, "InvalidParameterValue", "DescribeReservedCacheNodesOfferings", OfferingType="Cheap")
    _fails(world, "ReservedCacheNodesOfferingNotFound", "DescribeReservedCacheNodesOfferings",
           ReservedCacheNodesOfferingId="438012d3-4052-4cc7-b2e3-8d3372e0e706")


def test_purchase_states_tags_and_errors(world: World) -> None:
    offering = OFFERINGS[0].id
    bought = world.call("PurchaseReservedCacheNodesOffering", ReservedCacheNodesOfferingId=offering,
                        ReservedCacheNodeId="MyReservation", CacheNodeCount=2,
                        Tags=[{"Key": "team", "Value": "a"}])["ReservedCacheNode"]
    assert (bought["ReservedCacheNodeId"], bought["State"], bought["CacheNodeCount"]) == (
        "myreservation", "payment-pending", 2)
    arn = bought["ReservationARN"]
    assert arn == "arn:aws:elasticache:us-east-1:123456789012:reserved-instance:myreservation"
    assert world.call("ListTagsForResource", ResourceName=arn)["TagList"] == [{"Key": "team", "Value": "a"}]
    world.clock.advance(timedelta(minutes=2))
    described = world.call("DescribeReservedCacheNodes", ReservedCacheNodeId="myreservation")["ReservedCacheNodes"]
    assert described[0]["State"] == "active"
    world.clock.advance(timedelta(days=366))
    assert world.call("DescribeReservedCacheNodes")["ReservedCacheNodes"][0]["State"] == "retired"
    generated = world.call("PurchaseReservedCacheNodesOffering",
                           ReservedCacheNodesOfferingId=offering)["ReservedCacheNode"]["ReservedCacheNodeId"]
    assert generated.startswith("ri-")
    _fails(world, "ReservedCacheNodeAlreadyExists", "PurchaseReservedCacheNodesOffering",
           ReservedCacheNodesOfferingId=offering, ReservedCacheNodeId="myreservation")
    _fails(world, "ReservedCacheNodesOfferingNotFound", "PurchaseReservedCacheNodesOffering",
           ReservedCacheNodesOfferingId="nope")
    _fails(world, "ReservedCacheNodeQuotaExceeded", "PurchaseReservedCacheNodesOffering",
           ReservedCacheNodesOfferingId=offering, ReservedCacheNodeId="big", CacheNodeCount=300)
    _fails(world, "InvalidParameterValue", "PurchaseReservedCacheNodesOffering",
           ReservedCacheNodesOfferingId=offering, CacheNodeCount=0)
    _fails(world, "ReservedCacheNodeNotFound", "DescribeReservedCacheNodes", ReservedCacheNodeId="nope")
    assert len(world.call("DescribeReservedCacheNodes")["ReservedCacheNodes"]) == 2
    assert world.call("DescribeReservedCacheNodes", Duration="3")["ReservedCacheNodes"] == []


# ---- DescribeCacheEngineVersions ----------------------------------------------------------------


def test_default_only_per_engine_and_major(world: World) -> None:
    def versions(**params: Any) -> list[str]:
        return [v["EngineVersion"] for v in world.call("DescribeCacheEngineVersions", **params)["CacheEngineVersions"]]

    assert versions(Engine="redis", DefaultOnly=True) == ["7.1"]
    assert versions(Engine="redis", EngineVersion="6.0", DefaultOnly=True) == ["6.2"]
    assert versions(Engine="memcached", EngineVersion="1.5.10", DefaultOnly=True) == ["1.5.16"]
    assert sorted(versions(DefaultOnly=True)) == ["1.6.22", "7.1", "8.1"]
    assert versions(Engine="redis", EngineVersion="6.0") == ["6.0"]


# ---- cache security groups --------------------------------------------------------------------


def test_cache_security_groups_are_refused_as_in_a_vpc_account(world: World) -> None:
    message = _fails(world, "InvalidParameterValue", "CreateCacheSecurityGroup", CacheSecurityGroupName="sg",
                     Description="d")
    assert message == "Use of cache security groups is not permitted in this API version for your account."
    assert world.call("DescribeCacheSecurityGroups")["CacheSecurityGroups"] == []
    for operation, extra in (("DescribeCacheSecurityGroups", {}), ("DeleteCacheSecurityGroup", {}),
                             ("AuthorizeCacheSecurityGroupIngress",
                              {"EC2SecurityGroupName": "web", "EC2SecurityGroupOwnerId": "123456789012"}),
                             ("RevokeCacheSecurityGroupIngress",
                              {"EC2SecurityGroupName": "web", "EC2SecurityGroupOwnerId": "123456789012"})):
        _fails(world, "CacheSecurityGroupNotFound", operation, CacheSecurityGroupName="default", **extra)
    _fails(world, "InvalidParameterValue", "CreateCacheCluster", CacheClusterId="web",
           CacheSecurityGroupNames=["default"], **REDIS)
    _fails(world, "InvalidParameterCombination", "CreateReplicationGroup", ReplicationGroupId="rg",
           ReplicationGroupDescription="d", CacheSecurityGroupNames=["default"], SecurityGroupIds=["sg-1"], **REDIS)
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    # VPC security groups are what a cache takes: stored and shown.
    made = world.call("CreateCacheCluster", CacheClusterId="web", SecurityGroupIds=["sg-0abc"], **REDIS)
    assert made["CacheCluster"]["SecurityGroups"] == [{"SecurityGroupId": "sg-0abc", "Status": "active"}]
    world.settle()
    _fails(world, "InvalidParameterValue", "ModifyCacheCluster", CacheClusterId="web",
           CacheSecurityGroupNames=["default"])
    changed = world.call("ModifyCacheCluster", CacheClusterId="web", SecurityGroupIds=["sg-1", "sg-2"])
    assert [g["SecurityGroupId"] for g in changed["CacheCluster"]["SecurityGroups"]] == ["sg-1", "sg-2"]


class _Listening:
    """A broadcaster with a subscriber: what the live feed publishes, kept."""

    listening = True

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, event: str, data: dict[str, Any], account: str | None = None,
                region: str | None = None) -> None:
        self.published.append(data)


def test_the_live_feed_shows_the_new_kinds(world: World) -> None:
    from controlplane.admin.feed import Feed

    sink = _Listening()
    feed = Feed(sink, world.service.store, world.clock)  # type: ignore[arg-type]
    world.service.store.listen(feed.record_changed)
    world.call("CreateCacheSubnetGroup", CacheSubnetGroupName="sg", CacheSubnetGroupDescription="d",
               SubnetIds=["subnet-1"])
    world.call("PurchaseReservedCacheNodesOffering", ReservedCacheNodesOfferingId=OFFERINGS[0].id,
               ReservedCacheNodeId="ri")
    shown = {(d["kind"], d["id"]): d["status"] for d in sink.published}
    assert shown[("cache-subnet-group", "sg")] == "available"
    assert shown[("reserved-cache-node", "ri")] == "payment-pending"
