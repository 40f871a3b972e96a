"""Global datastores on the fake runtime and fake clock: a primary group in us-east-1, a secondary in
eu-west-1 that replicates from the primary group's endpoint, failover between them, disassociation
and AWS's refusals."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.harness import ApiError, Caller
from tests.unit.controlplane.conftest import World

GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.r6g.large",
         "NumCacheClusters": 2, "AutomaticFailoverEnabled": True, "MultiAZEnabled": True}


def _eu(world: World) -> Caller:
    return dataclasses.replace(world.call, region="eu-west-1")


def _node(region: str, member: str) -> str:
    return f"123456789012-{region}-{member}-0001"


def _status(call: Caller, group_id: str) -> str:
    return str(call("DescribeReplicationGroups", ReplicationGroupId=group_id)["ReplicationGroups"][0]["Status"])


def _global(world: World, **extra: Any) -> dict[str, Any]:
    return dict(world.call("DescribeGlobalReplicationGroups", GlobalReplicationGroupId="ldgnf-gd", ShowMemberInfo=True,
                           **extra)["GlobalReplicationGroups"][0])


def _error(call: Caller, operation: str, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        call(operation, **params)
    return err.value


def _setup(world: World) -> dict[str, Any]:
    world.call("CreateReplicationGroup", ReplicationGroupId="main", **GROUP)
    world.settle_until(lambda: _status(world.call, "main") == "available")
    created = world.call("CreateGlobalReplicationGroup", GlobalReplicationGroupIdSuffix="gd",
                         GlobalReplicationGroupDescription="both sides", PrimaryReplicationGroupId="main")
    world.settle()
    eu = _eu(world)
    eu("CreateReplicationGroup", ReplicationGroupId="copy", ReplicationGroupDescription="secondary",
       GlobalReplicationGroupId="ldgnf-gd", NumCacheClusters=2)
    world.settle_until(lambda: _global(world)["Status"] == "available")
    return dict(created["GlobalReplicationGroup"])


def test_a_secondary_replicates_from_the_primary_endpoint(world: World) -> None:
    created = _setup(world)
    assert created["GlobalReplicationGroupId"] == "ldgnf-gd"
    assert created["ARN"] == "arn:aws:elasticache::123456789012:globalreplicationgroup:ldgnf-gd"
    g = _global(world)
    assert g["Engine"] == "redis" and g["CacheNodeType"] == "cache.r6g.large" and g["ClusterEnabled"] is False
    assert [(m["ReplicationGroupId"], m["ReplicationGroupRegion"], m["Role"], m["Status"]) for m in g["Members"]] == [
        ("main", "us-east-1", "PRIMARY", "associated"), ("copy", "eu-west-1", "SECONDARY", "associated")]
    main = world.call("DescribeReplicationGroups", ReplicationGroupId="main")["ReplicationGroups"][0]
    endpoint = main["NodeGroups"][0]["PrimaryEndpoint"]
    assert world.runtime.primary_of[_node("eu-west-1", "copy-001")] == (endpoint["Address"], endpoint["Port"])
    assert world.runtime.primary_of[_node("us-east-1", "main-001")] is None
    copy = _eu(world)("DescribeReplicationGroups", ReplicationGroupId="copy")["ReplicationGroups"][0]
    assert copy["GlobalReplicationGroupInfo"] == {"GlobalReplicationGroupId": "ldgnf-gd",
                                                  "GlobalReplicationGroupMemberRole": "SECONDARY"}
    assert copy["CacheNodeType"] == "cache.r6g.large"  # inherited
    # Without ShowMemberInfo, no members; from the other region, the same datastore.
    assert "Members" not in world.call("DescribeGlobalReplicationGroups")["GlobalReplicationGroups"][0]
    assert _eu(world)("DescribeGlobalReplicationGroups")["GlobalReplicationGroups"][0]["GlobalReplicationGroupId"] \
        == "ldgnf-gd"


def test_failover_swaps_the_roles(world: World) -> None:
    _setup(world)
    world.call("FailoverGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd", PrimaryRegion="eu-west-1",
               PrimaryReplicationGroupId="copy")
    world.settle_until(lambda: _global(world)["Status"] == "available")
    roles = {m["ReplicationGroupId"]: m["Role"] for m in _global(world)["Members"]}
    assert roles == {"main": "SECONDARY", "copy": "PRIMARY"}
    assert world.runtime.primary_of[_node("eu-west-1", "copy-001")] is None  # a primary now
    copy = _eu(world)("DescribeReplicationGroups", ReplicationGroupId="copy")["ReplicationGroups"][0]
    endpoint = copy["NodeGroups"][0]["PrimaryEndpoint"]
    world.settle_until(lambda: world.runtime.primary_of[_node("us-east-1", "main-001")] == (
        endpoint["Address"], endpoint["Port"]))
    assert "Replication group copy is now the primary of global replication group ldgnf-gd" in [
        e["Message"] for e in _eu(world)("DescribeEvents", SourceType="replication-group")["Events"]]


def test_disassociate_then_delete(world: World) -> None:
    _setup(world)
    assert _error(world.call, "DeleteGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd",
                  RetainPrimaryReplicationGroup=True).code == "InvalidGlobalReplicationGroupState"
    assert _error(_eu(world), "DeleteReplicationGroup", ReplicationGroupId="copy").code == \
        "InvalidReplicationGroupState"
    world.call("DisassociateGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd", ReplicationGroupId="copy",
               ReplicationGroupRegion="eu-west-1")
    world.settle_until(lambda: world.runtime.primary_of.get(_node("eu-west-1", "copy-001")) is None)
    assert _global(world)["Status"] == "primary-only"
    copy = _eu(world)("DescribeReplicationGroups", ReplicationGroupId="copy")["ReplicationGroups"][0]
    assert "GlobalReplicationGroupInfo" not in copy or not copy["GlobalReplicationGroupInfo"]
    deleted = world.call("DeleteGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd",
                         RetainPrimaryReplicationGroup=True)
    assert deleted["GlobalReplicationGroup"]["Status"] == "deleting"
    assert world.call("DescribeGlobalReplicationGroups")["GlobalReplicationGroups"] == []
    assert _status(world.call, "main") == "available"


def test_refusals(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="small", ReplicationGroupDescription="d", Engine="redis",
               CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True)
    world.settle_until(lambda: _status(world.call, "small") == "available")
    err = _error(world.call, "CreateGlobalReplicationGroup", GlobalReplicationGroupIdSuffix="x",
                 PrimaryReplicationGroupId="small")
    assert err.code == "InvalidParameterValue" and "node types" in err.message
    assert _error(world.call, "CreateGlobalReplicationGroup", GlobalReplicationGroupIdSuffix="x",
                  PrimaryReplicationGroupId="nope").code == "ReplicationGroupNotFoundFault"
    _setup(world)
    assert _error(world.call, "CreateGlobalReplicationGroup", GlobalReplicationGroupIdSuffix="gd",
                  PrimaryReplicationGroupId="main").code == "InvalidReplicationGroupState"
    cases: list[tuple[Caller, str, dict[str, Any], str]] = [
        (world.call, "DescribeGlobalReplicationGroups", {"GlobalReplicationGroupId": "nope"},
         "GlobalReplicationGroupNotFoundFault"),
        (world.call, "FailoverGlobalReplicationGroup", {"GlobalReplicationGroupId": "ldgnf-gd",
                                                        "PrimaryRegion": "us-east-1",
                                                        "PrimaryReplicationGroupId": "main"},
         "InvalidParameterValue"),
        (world.call, "DisassociateGlobalReplicationGroup", {"GlobalReplicationGroupId": "ldgnf-gd",
                                                            "ReplicationGroupId": "main",
                                                            "ReplicationGroupRegion": "us-east-1"},
         "InvalidParameterCombination"),
        (world.call, "ModifyGlobalReplicationGroup", {"GlobalReplicationGroupId": "ldgnf-gd",
                                                      "ApplyImmediately": False}, "InvalidParameterValue"),
        (world.call, "DeleteGlobalReplicationGroup", {"GlobalReplicationGroupId": "ldgnf-gd",
                                                      "RetainPrimaryReplicationGroup": False},
         "InvalidParameterValue"),
        (world.call, "IncreaseNodeGroupsInGlobalReplicationGroup", {"GlobalReplicationGroupId": "ldgnf-gd",
                                                                    "NodeGroupCount": 2, "ApplyImmediately": True},
         "InvalidParameterValue"),
        (world.call, "RebalanceSlotsInGlobalReplicationGroup", {"GlobalReplicationGroupId": "ldgnf-gd",
                                                                "ApplyImmediately": True}, "InvalidParameterValue"),
        # A second member in the same region, and a secondary in the primary's region.
        (world.call, "CreateReplicationGroup", {"ReplicationGroupId": "again", "ReplicationGroupDescription": "d",
                                                "GlobalReplicationGroupId": "ldgnf-gd"}, "InvalidParameterValue"),
        (dataclasses.replace(world.call, region="ap-south-1"), "CreateReplicationGroup",
         {"ReplicationGroupId": "third", "ReplicationGroupDescription": "d", "GlobalReplicationGroupId": "ldgnf-gd",
          "CacheNodeType": "cache.r5.large"}, "InvalidParameterValue"),
    ]
    for call, operation, params, code in cases:
        assert _error(call, operation, **params).code == code, (operation, params)


def test_modify_description_and_failover_setting(world: World) -> None:
    _setup(world)
    out = world.call("ModifyGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd", ApplyImmediately=True,
                     GlobalReplicationGroupDescription="new words")
    assert out["GlobalReplicationGroup"]["GlobalReplicationGroupDescription"] == "new words"
    err = _error(world.call, "ModifyGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd",
                 ApplyImmediately=True, AutomaticFailoverEnabled=False)
    assert err.code == "InvalidParameterCombination" and "Multi-AZ" in err.message
    world.call("AddTagsToResource", ResourceName="arn:aws:elasticache::123456789012:globalreplicationgroup:ldgnf-gd",
               Tags=[{"Key": "team", "Value": "cache"}])
    assert world.call("ListTagsForResource", ResourceName="arn:aws:elasticache::123456789012:globalreplicationgroup:"
                      "ldgnf-gd")["TagList"] == [{"Key": "team", "Value": "cache"}]


def test_a_secondary_takes_the_primarys_tls_and_token(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="main", TransitEncryptionEnabled=True,
               AuthToken="Token-of-twenty-chars", **GROUP)
    world.settle_until(lambda: _status(world.call, "main") == "available")
    world.call("CreateGlobalReplicationGroup", GlobalReplicationGroupIdSuffix="gd", PrimaryReplicationGroupId="main")
    eu = _eu(world)
    assert _error(eu, "CreateReplicationGroup", ReplicationGroupId="copy", ReplicationGroupDescription="d",
                  GlobalReplicationGroupId="ldgnf-gd", TransitEncryptionEnabled=False).code == \
        "InvalidParameterCombination"
    eu("CreateReplicationGroup", ReplicationGroupId="copy", ReplicationGroupDescription="d",
       GlobalReplicationGroupId="ldgnf-gd", NumCacheClusters=2)
    copy = eu("DescribeReplicationGroups", ReplicationGroupId="copy")["ReplicationGroups"][0]
    assert copy["TransitEncryptionEnabled"] is True and copy["AuthTokenEnabled"] is True
    world.settle_until(lambda: _global(world)["Status"] == "available")
    err = _error(eu, "ModifyReplicationGroup", ReplicationGroupId="copy", AuthToken="Another-token-of-20-chars",
                 AuthTokenUpdateStrategy="ROTATE", ApplyImmediately=True)
    assert err.code == "InvalidParameterCombination" and "global replication group" in err.message


def _node_versions(call: Caller, group_id: str) -> set[str]:
    clusters = call("DescribeCacheClusters", ShowCacheNodeInfo=True)["CacheClusters"]
    return {c["EngineVersion"] for c in clusters if c.get("ReplicationGroupId") == group_id}


def test_node_type_and_engine_upgrades_reach_every_member_secondaries_first(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="main", EngineVersion="6.2", **GROUP)
    world.settle_until(lambda: _status(world.call, "main") == "available")
    world.call("CreateGlobalReplicationGroup", GlobalReplicationGroupIdSuffix="gd", PrimaryReplicationGroupId="main")
    eu = _eu(world)
    eu("CreateReplicationGroup", ReplicationGroupId="copy", ReplicationGroupDescription="d",
       GlobalReplicationGroupId="ldgnf-gd", NumCacheClusters=2)
    world.settle_until(lambda: _global(world)["Status"] == "available")
    assert _error(world.call, "ModifyGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd",
                  ApplyImmediately=True, CacheNodeType="cache.t3.small").code == "InvalidParameterValue"
    world.call("ModifyGlobalReplicationGroup", GlobalReplicationGroupId="ldgnf-gd", ApplyImmediately=True,
               CacheNodeType="cache.r6g.xlarge", EngineVersion="7.0")
    before = len(world.runtime.calls)
    world.settle_until(lambda: _status(world.call, "main") == "available" and _status(eu, "copy") == "available"
                       and _node_versions(world.call, "main") == {"7.0.15"})
    assert _node_versions(eu, "copy") == {"7.0.15"}
    # The primary group held its upgrade until every secondary node ran the new version.
    starts = [name for call, name in world.runtime.calls[before:] if call == "start"]
    assert len(starts) == 4 and all("eu-west-1" in n for n in starts[:2]) and all("us-east-1" in n for n in starts[2:])
    for call, group_id in ((world.call, "main"), (eu, "copy")):
        assert call("DescribeReplicationGroups", ReplicationGroupId=group_id)["ReplicationGroups"][0][
            "CacheNodeType"] == "cache.r6g.xlarge"
