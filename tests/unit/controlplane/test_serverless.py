"""Serverless cache requests through botocore's own serializer and parser: AWS's validation and
errors, the shape Describe gives, the states in which Modify and Delete are refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import ApiError
from tests.unit.controlplane.conftest import World


def _refused(world: World, operation: str, code: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


def _status(world: World, name: str) -> str:
    return str(world.call("DescribeServerlessCaches", ServerlessCacheName=name)["ServerlessCaches"][0]["Status"])


def _available(world: World, name: str) -> None:
    world.settle_until(lambda: _status(world, name) == "available")


def test_create_and_describe(world: World) -> None:
    cache = world.call("CreateServerlessCache", ServerlessCacheName="Sessions", Engine="valkey",
                       Description="user sessions", Tags=[{"Key": "team", "Value": "web"}],
                       CacheUsageLimits={"DataStorage": {"Maximum": 10, "Unit": "GB"},
                                         "ECPUPerSecond": {"Maximum": 5000}},
                       SnapshotRetentionLimit=3, DailySnapshotTime="04:00")["ServerlessCache"]
    assert cache["ServerlessCacheName"] == "sessions"  # stored lower-case
    assert cache["Status"] == "creating"
    assert (cache["Engine"], cache["MajorEngineVersion"], cache["FullEngineVersion"]) == ("valkey", "8", "8.0")
    assert cache["CacheUsageLimits"] == {"DataStorage": {"Maximum": 10, "Unit": "GB"},
                                         "ECPUPerSecond": {"Maximum": 5000}}
    assert cache["ARN"].endswith(":serverlesscache:sessions")
    assert (cache["SnapshotRetentionLimit"], cache["DailySnapshotTime"]) == (3, "04:00")
    described = world.call("DescribeServerlessCaches", ServerlessCacheName="sessions")["ServerlessCaches"]
    assert [c["ServerlessCacheName"] for c in described] == ["sessions"]
    tags = world.call("ListTagsForResource", ResourceName=cache["ARN"])["TagList"]
    assert tags == [{"Key": "team", "Value": "web"}]
    _refused(world, "CreateServerlessCache", "ServerlessCacheAlreadyExistsFault", ServerlessCacheName="sessions",
             Engine="valkey")
    _refused(world, "DescribeServerlessCaches", "ServerlessCacheNotFoundFault", ServerlessCacheName="nope")


@pytest.mark.parametrize(("params", "code"), [
    ({"ServerlessCacheName": "1bad", "Engine": "valkey"}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "x" * 41, "Engine": "valkey"}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "mysql"}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "redis", "MajorEngineVersion": "6"}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "valkey",
      "CacheUsageLimits": {"DataStorage": {"Maximum": 5001, "Unit": "GB"}}}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "valkey",
      "CacheUsageLimits": {"ECPUPerSecond": {"Maximum": 999}}}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "valkey",
      "CacheUsageLimits": {"DataStorage": {"Maximum": 5, "Minimum": 6, "Unit": "GB"}}},
     "InvalidParameterCombination"),
    ({"ServerlessCacheName": "ok", "Engine": "valkey", "SnapshotRetentionLimit": 36}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "valkey", "DailySnapshotTime": "25:00"}, "InvalidParameterValue"),
    ({"ServerlessCacheName": "ok", "Engine": "memcached", "UserGroupId": "team"}, "InvalidParameterCombination"),
    ({"ServerlessCacheName": "ok", "Engine": "valkey", "UserGroupId": "nobody"}, "UserGroupNotFound"),
])
def test_bad_requests_get_aws_errors_and_store_nothing(world: World, params: dict[str, Any], code: str) -> None:
    _refused(world, "CreateServerlessCache", code, **params)
    assert world.call("DescribeServerlessCaches")["ServerlessCaches"] == []


def test_modify_only_when_available_and_only_upwards(world: World) -> None:
    world.call("CreateServerlessCache", ServerlessCacheName="c1", Engine="redis")
    _refused(world, "ModifyServerlessCache", "InvalidServerlessCacheStateFault", ServerlessCacheName="c1",
             Description="too soon")
    _refused(world, "DeleteServerlessCache", "InvalidServerlessCacheStateFault", ServerlessCacheName="c1")
    _available(world, "c1")
    changed = world.call("ModifyServerlessCache", ServerlessCacheName="c1", Description="now",
                         CacheUsageLimits={"DataStorage": {"Maximum": 2, "Unit": "GB"}})["ServerlessCache"]
    assert changed["Description"] == "now" and changed["Status"] == "modifying"
    assert changed["CacheUsageLimits"]["DataStorage"]["Maximum"] == 2
    _available(world, "c1")
    _refused(world, "ModifyServerlessCache", "InvalidParameterCombination", ServerlessCacheName="c1",
             Engine="memcached")
    upgraded = world.call("ModifyServerlessCache", ServerlessCacheName="c1", Engine="valkey")["ServerlessCache"]
    assert (upgraded["Engine"], upgraded["MajorEngineVersion"]) == ("valkey", "8")
    _available(world, "c1")
    _refused(world, "ModifyServerlessCache", "InvalidParameterCombination", ServerlessCacheName="c1",
             RemoveUserGroup=True, UserGroupId="team")
    deleting = world.call("DeleteServerlessCache", ServerlessCacheName="c1")["ServerlessCache"]
    assert deleting["Status"] == "deleting"
    _refused(world, "DeleteServerlessCache", "InvalidServerlessCacheStateFault", ServerlessCacheName="c1")


def test_the_shards_are_a_hidden_cluster_and_keyroute_serves_the_endpoint(world: World) -> None:
    world.call("CreateServerlessCache", ServerlessCacheName="shop", Engine="valkey")
    _available(world, "shop")
    cache = world.call("DescribeServerlessCaches", ServerlessCacheName="shop")["ServerlessCaches"][0]
    endpoint, reader = cache["Endpoint"], cache["ReaderEndpoint"]
    assert (endpoint["Port"], reader["Port"]) == (6379, 6380) and endpoint["Address"] == reader["Address"]
    # Nothing of the user's region shows the shards.
    assert world.call("DescribeReplicationGroups")["ReplicationGroups"] == []
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    (config,) = world.key_routes.routes.values()
    assert config.listen == [(endpoint["Address"], 6379)] and config.readers == [(endpoint["Address"], 6380)]
    assert len(config.seeds) == 2 and config.cert_file is not None  # a primary and a replica; TLS always
    assert list(world.key_routes.limits.values()) == [None]  # no ECPU limit asked
    world.call("ModifyServerlessCache", ServerlessCacheName="shop",
               CacheUsageLimits={"ECPUPerSecond": {"Maximum": 5000}})
    _available(world, "shop")
    assert list(world.key_routes.limits.values()) == [5000]  # keyroute throttles past it
    assert "Serverless cache shop is available" in [
        e["Message"] for e in world.call("DescribeEvents", SourceType="serverless-cache")["Events"]]
    world.call("DeleteServerlessCache", ServerlessCacheName="shop")
    world.settle_until(lambda: not world.call("DescribeServerlessCaches")["ServerlessCaches"])
    assert world.key_routes.routes == {}
    assert world.runtime.list_managed() == []  # every shard node stopped


def test_describe_pages_with_next_token(world: World) -> None:
    for i in range(5):
        world.call("CreateServerlessCache", ServerlessCacheName=f"p{i}", Engine="valkey")
    first = world.call("DescribeServerlessCaches", MaxResults=2)
    assert [c["ServerlessCacheName"] for c in first["ServerlessCaches"]] == ["p0", "p1"]
    rest = world.call("DescribeServerlessCaches", MaxResults=10, NextToken=first["NextToken"])
    assert [c["ServerlessCacheName"] for c in rest["ServerlessCaches"]] == ["p2", "p3", "p4"]
    assert "NextToken" not in rest
