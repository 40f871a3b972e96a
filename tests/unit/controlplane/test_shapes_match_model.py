"""Every member name our record -> shape mapping emits exists in the botocore model, with a
value of the type the model says; a typo would otherwise vanish silently on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.model import Shape

from tests.unit.controlplane.conftest import World

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "long": (int,), "boolean": (bool,), "timestamp": (datetime,),
    "double": (float, int), "float": (float, int),
}


def _check(value: Any, shape: Shape, path: str) -> None:
    if shape.type_name == "structure":
        assert isinstance(value, dict), path
        for key, item in value.items():
            assert key in shape.members, f"{path}.{key} is not a member of {shape.name}"
            _check(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list":
        assert isinstance(value, list), path
        for i, item in enumerate(value):
            _check(item, shape.member, f"{path}[{i}]")
    else:
        assert isinstance(value, _TYPES[shape.type_name]), f"{path}: {value!r} is not {shape.type_name}"
        if shape.type_name == "integer":
            assert not isinstance(value, bool), path


def test_every_implemented_output_matches_its_shape(world: World) -> None:
    from controlplane.handlers.context import RequestContext

    ctx = RequestContext("123456789012", "us-east-1", "r", world.service.query.services)
    h = world.service.query.handlers
    world.runtime.set_ready_after(0)
    created = h["CreateCacheCluster"](ctx, {"CacheClusterId": "mc", "Engine": "memcached",
                                            "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 2,
                                            "Tags": [{"Key": "a", "Value": "b"}]})
    world.settle()
    h["CreateCacheCluster"](ctx, {"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t3.micro"})
    world.settle()
    h["ModifyCacheCluster"](ctx, {"CacheClusterId": "mc", "NumCacheNodes": 3})
    outputs = {
        "CreateCacheCluster": created,
        "DescribeCacheClusters": h["DescribeCacheClusters"](ctx, {"ShowCacheNodeInfo": True, "MaxRecords": 20}),
        "DescribeCacheEngineVersions": h["DescribeCacheEngineVersions"](ctx, {}),
        "DescribeEvents": h["DescribeEvents"](ctx, {}),
        "ListTagsForResource": h["ListTagsForResource"](ctx, {"ResourceName": created["CacheCluster"]["ARN"]}),
        "RebootCacheCluster": h["RebootCacheCluster"](ctx, {"CacheClusterId": "web",
                                                            "CacheNodeIdsToReboot": ["0001"]}),
    }
    for operation, result in outputs.items():
        shape = world.service.api.operation(operation).output_shape  # type: ignore[union-attr]
        _check(result, shape, operation)


def test_snapshot_outputs_match_their_shapes(world: World) -> None:
    """Read from the handlers themselves: a parse by botocore would drop a misspelt member."""
    from controlplane.handlers.context import RequestContext
    from tests.unit.controlplane.test_snapshots import REDIS, settle, status

    ctx = RequestContext("123456789012", "us-east-1", "r", world.service.query.services)
    h = world.service.query.handlers
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.call("CreateReplicationGroup", ReplicationGroupId="grp", ReplicationGroupDescription="g",
               Engine="redis", CacheNodeType="cache.t3.micro", NumCacheClusters=2)
    settle(world)
    outputs = {"CreateSnapshot": h["CreateSnapshot"](ctx, {"CacheClusterId": "web", "SnapshotName": "a"})}
    h["CreateSnapshot"](ctx, {"ReplicationGroupId": "grp", "SnapshotName": "g"})
    settle(world, lambda: status(world, "a") == status(world, "g") == "available")
    outputs["DescribeSnapshots"] = h["DescribeSnapshots"](ctx, {"ShowNodeGroupConfig": True})
    outputs["CopySnapshot"] = h["CopySnapshot"](ctx, {"SourceSnapshotName": "g", "TargetSnapshotName": "c"})
    outputs["DeleteSnapshot"] = h["DeleteSnapshot"](ctx, {"SnapshotName": "a"})
    assert len(outputs["DescribeSnapshots"]["Snapshots"]) == 2
    for operation, result in outputs.items():
        shape = world.service.api.operation(operation).output_shape  # type: ignore[union-attr]
        _check(result, shape, operation)



def test_user_group_and_security_outputs_match_their_shapes(world: World, monkeypatch: Any) -> None:
    """Users, user groups (with pending changes), and a group with TLS, a token and a pending user
    group (the TLS gate opened, as the wiring step will open it)."""
    from controlplane.handlers.context import RequestContext
    from controlplane.state.acl import desired_security
    from controlplane.state.records import ReplicationGroup

    ctx = RequestContext("123456789012", "us-east-1", "r", world.service.query.services)
    h = world.service.query.handlers
    outputs = {"CreateUser": h["CreateUser"](ctx, {"UserId": "app", "UserName": "default", "Engine": "redis",
                                                   "AccessString": "on ~* +@all", "Passwords": ["a-password-of-20"]}),
               "CreateUserGroup": h["CreateUserGroup"](ctx, {"UserGroupId": "team", "Engine": "redis",
                                                             "UserIds": ["app"]})}
    h["CreateReplicationGroup"](ctx, {"ReplicationGroupId": "rg", "ReplicationGroupDescription": "d",
                                      "CacheNodeType": "cache.t3.micro", "TransitEncryptionEnabled": True,
                                      "AuthToken": "Token-of-twenty-chars"})
    world.settle()  # the group is active
    store = world.service.store
    store.update(ctx.key(ReplicationGroup.KIND, "rg"), ReplicationGroup,
                 lambda r: setattr(r.status, "security_applied", desired_security(store, r)))
    outputs["ModifyUser"] = h["ModifyUser"](ctx, {"UserId": "app", "AppendAccessString": "-flushall"})
    outputs["ModifyReplicationGroup"] = h["ModifyReplicationGroup"](ctx, {
        "ReplicationGroupId": "rg", "UserGroupIdsToAdd": ["team"], "AuthTokenUpdateStrategy": "DELETE"})
    outputs["ModifyUserGroup"] = h["ModifyUserGroup"](ctx, {"UserGroupId": "team", "UserIdsToAdd": ["default"],
                                                            "UserIdsToRemove": ["app"]})
    assert outputs["ModifyReplicationGroup"]["ReplicationGroup"]["PendingModifiedValues"]["UserGroups"]
    assert outputs["ModifyUserGroup"]["PendingChanges"]
    outputs["DescribeUsers"] = h["DescribeUsers"](ctx, {})
    outputs["DescribeUserGroups"] = h["DescribeUserGroups"](ctx, {})
    outputs["DescribeReplicationGroups"] = h["DescribeReplicationGroups"](ctx, {})
    outputs["DescribeCacheClusters"] = h["DescribeCacheClusters"](ctx, {})
    world.call("CreateUserGroup", UserGroupId="spare", Engine="redis", UserIds=["default"])
    world.settle()
    outputs["DeleteUserGroup"] = h["DeleteUserGroup"](ctx, {"UserGroupId": "spare"})
    world.call("CreateUser", UserId="gone", UserName="gone", Engine="redis", AccessString="on", NoPasswordRequired=True)
    outputs["DeleteUser"] = h["DeleteUser"](ctx, {"UserId": "gone"})
    for operation, result in outputs.items():
        shape = world.service.api.operation(operation).output_shape  # type: ignore[union-attr]
        _check(result, shape, operation)


def test_configuration_family_outputs_match_their_shapes(world: World) -> None:
    """Subnet groups, node-type modifications, reserved nodes and security groups, read from the
    handlers themselves."""
    from controlplane.handlers.context import RequestContext
    from controlplane.state.reserved import OFFERINGS

    ctx = RequestContext("123456789012", "us-east-1", "r", world.service.query.services)
    h = world.service.query.handlers
    subnets = {"CacheSubnetGroupName": "sg", "CacheSubnetGroupDescription": "d", "SubnetIds": ["subnet-1", "subnet-2"]}
    outputs = {
        "CreateCacheSubnetGroup": h["CreateCacheSubnetGroup"](ctx, subnets),
        "ModifyCacheSubnetGroup": h["ModifyCacheSubnetGroup"](ctx, {"CacheSubnetGroupName": "sg",
                                                                    "SubnetIds": ["subnet-3"]}),
        "DescribeCacheSubnetGroups": h["DescribeCacheSubnetGroups"](ctx, {}),
        "CreateCacheCluster": h["CreateCacheCluster"](ctx, {"CacheClusterId": "web", "Engine": "redis",
                                                            "CacheNodeType": "cache.t3.micro",
                                                            "CacheSubnetGroupName": "sg"}),
        "ListAllowedNodeTypeModifications": h["ListAllowedNodeTypeModifications"](ctx, {"CacheClusterId": "web"}),
        "DescribeReservedCacheNodesOfferings": h["DescribeReservedCacheNodesOfferings"](ctx, {}),
        "PurchaseReservedCacheNodesOffering": h["PurchaseReservedCacheNodesOffering"](
            ctx, {"ReservedCacheNodesOfferingId": OFFERINGS[-1].id}),
        "DescribeReservedCacheNodes": h["DescribeReservedCacheNodes"](ctx, {}),
        "DescribeCacheSecurityGroups": h["DescribeCacheSecurityGroups"](ctx, {}),
    }
    assert outputs["CreateCacheCluster"]["CacheCluster"]["CacheSubnetGroupName"] == "sg"
    for operation, result in outputs.items():
        shape = world.service.api.operation(operation).output_shape  # type: ignore[union-attr]
        _check(result, shape, operation)
