"""Acceptance for subnet groups on real nodes: a 3-node replication group on a subnet group over
three zones has one node in each zone, and interrupting one zone (the primary's) leaves the group
serving writes on its primary endpoint."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer
from tests.eventually import eventually

SUBNETS = ["subnet-a-us-east-1a", "subnet-b-us-east-1b", "subnet-c-us-east-1c"]


def test_subnet_group_errors_through_boto3(ec: Any) -> None:
    with pytest.raises(ClientError) as err:
        ec.create_cache_subnet_group(CacheSubnetGroupName="bad", CacheSubnetGroupDescription="d",
                                     SubnetIds=["vpc-123"])
    assert err.value.response["Error"]["Code"] == "InvalidSubnet"
    with pytest.raises(ClientError) as err:
        ec.describe_cache_subnet_groups(CacheSubnetGroupName="nope")
    assert err.value.response["Error"]["Code"] == "CacheSubnetGroupNotFoundFault"


def test_three_zones_one_node_each_and_a_zone_outage_leaves_the_group_serving(server: LiveServer, ec: Any) -> None:
    ec.create_cache_subnet_group(CacheSubnetGroupName="three", CacheSubnetGroupDescription="three zones",
                                 SubnetIds=SUBNETS)
    ec.create_replication_group(ReplicationGroupId="spread", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=3, AutomaticFailoverEnabled=True,
                                MultiAZEnabled=True, CacheSubnetGroupName="three")
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="spread", WaiterConfig={"Delay": 1})
    group = ec.describe_replication_groups(ReplicationGroupId="spread")["ReplicationGroups"][0]
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    assert sorted(m["PreferredAvailabilityZone"] for m in members) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    primary = next(m for m in members if m["CurrentRole"] == "primary")
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    zone = primary["PreferredAvailabilityZone"]
    with pytest.raises(ClientError) as err:  # in use: AWS refuses to delete it
        ec.delete_cache_subnet_group(CacheSubnetGroupName="three")
    assert err.value.response["Error"]["Code"] == "CacheSubnetGroupInUse"

    def writes() -> bool:
        client = redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=1)
        try:
            return bool(client.set("k", "v"))
        except redis.RedisError:
            return False
        finally:
            client.close()

    assert eventually(writes, 15.0, 0.05, "a write before the outage")
    try:
        server.admin("POST", "/api/v1/faults/availability-zone", {"availability_zone": zone, "seconds": 120})
        eventually(lambda: _primary_zone(ec) not in (None, zone), 60.0, 0.2, "a primary outside the interrupted zone")
        assert eventually(writes, 30.0, 0.1, "writes on the primary endpoint during the outage")
    finally:
        server.admin("DELETE", f"/api/v1/faults/availability-zone/{zone}")


def _primary_zone(ec: Any) -> str | None:
    members = ec.describe_replication_groups(ReplicationGroupId="spread")["ReplicationGroups"][0]["NodeGroups"][0][
        "NodeGroupMembers"]
    return next((m["PreferredAvailabilityZone"] for m in members if m["CurrentRole"] == "primary"), None)
