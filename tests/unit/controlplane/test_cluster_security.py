"""TLS, AUTH tokens and RBAC user groups on cluster-mode-enabled groups (fake runtime): every node of
every shard starts with them, tokens and users change live on all of them, nodes made by a failover
keep them, and what is not built (TLS changes on a running cluster group, IAM users) is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

NODE = "123456789012-us-east-1-{}-0001"
TOKEN = "Token-of-twenty-chars"
TOKEN2 = "Second-token-12345678"
TOKEN3 = "Third-token-123456789"
PW = "a-password-of-20-chars"
CLUSTER = {"ReplicationGroupId": "cl", "ReplicationGroupDescription": "d", "Engine": "redis",
           "CacheNodeType": "cache.t3.micro", "NumNodeGroups": 3, "ReplicasPerNodeGroup": 1,
           "TransitEncryptionEnabled": True}
MEMBERS = [f"cl-000{s}-00{n}" for s in (1, 2, 3) for n in (1, 2)]


def _group(world: World) -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId="cl")["ReplicationGroups"][0]


def _refused(world: World, operation: str, code: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


def _default_rules(world: World, member: str) -> tuple[str, ...]:
    security = world.runtime.config_of(NODE.format(member)).security
    assert security is not None
    return next(u.rules for u in security.users if u.name == "default")


def _rbac(world: World, iam: bool = False) -> None:
    world.call("CreateUser", UserId="boss", UserName="default", Engine="redis", AccessString="on ~* +@all",
               Passwords=[PW])
    world.call("CreateUser", UserId="app", UserName="app", Engine="redis", AccessString="on ~app:* +get",
               Passwords=[PW])
    ids = ["boss", "app"]
    if iam:
        world.call("CreateUser", UserId="svc", UserName="svc", Engine="redis", AccessString="on ~* +get",
                   AuthenticationMode={"Type": "iam"})
        ids.append("svc")
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=ids)
    world.settle()


def test_every_node_of_every_shard_starts_with_tls_and_the_token(world: World) -> None:
    created = world.call("CreateReplicationGroup", **CLUSTER, AuthToken=TOKEN)["ReplicationGroup"]
    assert created["ClusterEnabled"] is True and created["AuthTokenEnabled"] is True
    world.settle_until(lambda: _group(world)["Status"] == "available")
    group = _group(world)
    assert group["TransitEncryptionEnabled"] is True and group["TransitEncryptionMode"] == "required"
    config_host = group["ConfigurationEndpoint"]["Address"]
    for member in MEMBERS:
        config = world.runtime.config_of(NODE.format(member))
        assert config.security is not None and config.security.tls is not None
        assert config.security.tls.mode == "required" and config.settings["cluster-enabled"] == "yes"
        assert _default_rules(world, member) == ("on", f">{TOKEN}", "~*", "&*", "+@all")
        record = world.call("DescribeCacheClusters", CacheClusterId=member)["CacheClusters"][0]
        assert record["TransitEncryptionEnabled"] is True and record["AuthTokenEnabled"] is True
    # The configuration endpoint floats between nodes: every node's certificate names it.
    tls = world.runtime.config_of(NODE.format("cl-0003-002")).security.tls  # type: ignore[union-attr]
    assert tls is not None
    cert = x509.load_pem_x509_certificate(Path(tls.cert_file).read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert config_host in [str(a) for a in sans.get_values_for_type(x509.IPAddress)]


def test_tokens_rotate_and_set_live_on_every_node_and_a_replacement_keeps_them(world: World) -> None:
    world.call("CreateReplicationGroup", **CLUSTER, AuthToken=TOKEN)
    world.settle_until(lambda: _group(world)["Status"] == "available")
    starts = len(world.runtime.calls_of("start"))
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="cl", AuthToken=TOKEN2,
                     AuthTokenUpdateStrategy="ROTATE", ApplyImmediately=True)["ReplicationGroup"]
    assert out["PendingModifiedValues"] == {"AuthTokenStatus": "ROTATING"}
    world.runtime.refuse_commands(NODE.format("cl-0003-002"))  # one replica of one shard cannot take it yet
    world.settle()
    assert _group(world)["Status"] == "modifying"  # not before every node of every shard has it
    world.runtime.refuse_commands(NODE.format("cl-0003-002"), False)
    world.clock.advance(1)
    world.settle_until(lambda: _group(world)["Status"] == "available")
    both = ("on", f">{TOKEN}", f">{TOKEN2}", "~*", "&*", "+@all")
    applied = {name: users[0].rules for name, users in world.runtime.applied_users}
    assert all(applied[NODE.format(m)] == both for m in MEMBERS)
    assert len(world.runtime.calls_of("start")) == starts  # live: no node restarted
    world.call("ModifyReplicationGroup", ReplicationGroupId="cl", AuthToken=TOKEN3, AuthTokenUpdateStrategy="SET",
               ApplyImmediately=True)
    world.settle_until(lambda: not _group(world).get("PendingModifiedValues"))
    # A shard's primary dies: the node made to replace it starts with the token of now.
    world.runtime.crash(NODE.format("cl-0002-001"))
    world.settle_until(lambda: _group(world)["Status"] == "available"
                       and world.runtime.calls_of("start").count(NODE.format("cl-0002-001")) == 2)
    assert _default_rules(world, "cl-0002-001") == ("on", f">{TOKEN3}", "~*", "&*", "+@all")


def test_user_groups_on_every_node_and_user_changes_live(world: World) -> None:
    _rbac(world)
    world.call("CreateReplicationGroup", **CLUSTER, UserGroupIds=["team"])
    world.settle_until(lambda: _group(world)["Status"] == "available")
    assert _group(world)["UserGroupIds"] == ["team"]
    for member in MEMBERS:
        users = world.runtime.config_of(NODE.format(member)).security.users  # type: ignore[union-attr]
        assert [u.name for u in users] == ["default", "app"]
    assert world.call("DescribeUserGroups", UserGroupId="team")["UserGroups"][0]["ReplicationGroups"] == ["cl"]
    assert world.call("ModifyUser", UserId="app", AccessString="on ~app:* +get +set")["Status"] == "modifying"
    world.settle_until(lambda: world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "active")
    applied = {name: users for name, users in world.runtime.applied_users}
    for member in MEMBERS:
        app = next(u for u in applied[NODE.format(member)] if u.name == "app")
        assert "+set" in app.rules
    # From RBAC back to a token: user groups removed, token set, on every node.
    world.call("ModifyReplicationGroup", ReplicationGroupId="cl", AuthToken=TOKEN, RemoveUserGroups=True,
               ApplyImmediately=True)
    world.settle_until(lambda: _group(world)["Status"] == "available" and not _group(world)["UserGroupIds"])
    applied = {name: users for name, users in world.runtime.applied_users}
    assert all([u.name for u in applied[NODE.format(m)]] == ["default"] for m in MEMBERS)


def test_what_a_running_cluster_group_cannot_change_is_refused(world: World) -> None:
    world.call("CreateReplicationGroup", **CLUSTER, TransitEncryptionMode="preferred")
    world.settle_until(lambda: _group(world)["Status"] == "available")
    for params in ({"TransitEncryptionMode": "required"}, {"TransitEncryptionEnabled": False}):
        message = _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="cl",
                           ApplyImmediately=True, **params)
        assert "cluster mode enabled" in message and "Create a new group" in message
    assert _group(world)["TransitEncryptionMode"] == "preferred"
    world.call("CreateReplicationGroup", **{**CLUSTER, "ReplicationGroupId": "plain",
                                            "TransitEncryptionEnabled": False})
    world.settle_until(lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="plain")[
        "ReplicationGroups"][0]["Status"] == "available")
    message = _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="plain",
                       TransitEncryptionEnabled=True, TransitEncryptionMode="preferred", ApplyImmediately=True)
    assert "cluster mode enabled" in message


def test_iam_users_are_refused_in_cluster_groups(world: World) -> None:
    _rbac(world, iam=True)
    message = _refused(world, "CreateReplicationGroup", "InvalidParameterCombination", **CLUSTER,
                       UserGroupIds=["team"])
    assert "AuthenticationMode iam" in message and "cluster mode enabled" in message
    world.call("ModifyUserGroup", UserGroupId="team", UserIdsToRemove=["svc"])
    world.settle()
    world.call("CreateReplicationGroup", **CLUSTER, UserGroupIds=["team"])
    world.settle_until(lambda: _group(world)["Status"] == "available")
    _refused(world, "ModifyUserGroup", "InvalidParameterCombination", UserGroupId="team", UserIdsToAdd=["svc"])
    _refused(world, "ModifyUser", "InvalidParameterCombination", UserId="app",
             AuthenticationMode={"Type": "iam"})
