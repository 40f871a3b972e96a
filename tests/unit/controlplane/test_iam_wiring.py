"""IAM users reach real nodes through the runtime's IAM authenticator: a replication group whose
user group has an IAM user starts (and restarts, replaces, fails over) its nodes with an IAM
realm and the user's internal password, and the runtime is given the service's token verifier.
The authenticator itself is tested on real nodes (tests/unit/engine/test_iam_auth.py,
tests/api/test_iam_live.py); here the fake runtime records what the reconcilers ask."""

from __future__ import annotations

import time
from typing import Any

from controlplane.auth.iam_signer import iam_token
from controlplane.state.acl import iam_realm
from engine import NodeSecurity, iam_password
from tests.unit.controlplane.conftest import World

ACCOUNT, REGION = "123456789012", "us-east-1"
REALM = iam_realm(ACCOUNT, REGION, "rg")
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
         "NumCacheClusters": 2, "TransitEncryptionEnabled": True, "UserGroupIds": ["team"]}
PW = "a-password-of-20-chars"


def _node(member_id: str) -> str:
    return f"{ACCOUNT}-{REGION}-{member_id}-0001"


def _security(world: World, member_id: str) -> NodeSecurity:
    security = world.runtime.config_of(_node(member_id)).security
    assert security is not None
    return security


def _rg(world: World) -> dict[str, Any]:
    out: dict[str, Any] = world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]
    return out


def _make(world: World) -> None:
    world.call("CreateUser", UserId="robot", UserName="robot", Engine="redis", AccessString="on ~robot:* +@all",
               AuthenticationMode={"Type": "iam"})
    world.call("CreateUser", UserId="app", UserName="app", Engine="redis", AccessString="on ~* +@all", Passwords=[PW])
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["default", "robot"])
    world.settle()
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP)
    world.settle_until(lambda: _rg(world)["Status"] == "available")


def test_nodes_of_a_group_with_an_iam_user_get_the_authenticator(world: World) -> None:
    _make(world)
    for member_id in ("rg-001", "rg-002"):
        security = _security(world, member_id)
        assert security.iam_realm == REALM
        robot = next(u for u in security.users if u.name == "robot")
        # Its internal password, which only the authenticator logs in with; no password of its own.
        assert robot.rules == ("on", "~robot:*", "+@all", ">" + iam_password(security.admin, "robot"))
    verify = world.runtime.iam_verify
    assert verify is not None  # the service gave the runtime its verifier
    assert verify(REALM, "robot", iam_token("rg", "robot"))
    assert not verify(REALM, "robot", iam_token("rg", "robot", now=time.time() - 16 * 60))  # too old
    assert not verify(REALM, "robot", iam_token("other", "robot"))  # another cache's
    assert not verify(REALM, "app", iam_token("rg", "app"))  # a password user
    assert not verify(REALM, "robot", iam_token("rg", "robot", secret="forged"))
    assert not verify("not-a-realm", "robot", iam_token("rg", "robot"))


def test_the_authenticator_comes_and_goes_with_the_iam_users(world: World) -> None:
    _make(world)
    starts = len(world.runtime.calls_of("start"))
    world.call("ModifyUserGroup", UserGroupId="team", UserIdsToRemove=["robot"], UserIdsToAdd=["app"])
    world.settle_until(lambda: _security(world, "rg-001").iam_realm is None
                       and _security(world, "rg-002").iam_realm is None)
    # A rolling restart (the node's ports move behind the authenticator or back), one node at a time.
    assert sorted(world.runtime.calls_of("start")[starts:]) == [_node("rg-001"), _node("rg-002")]
    assert [u.name for u in _security(world, "rg-001").users] == ["default", "app"]
    world.settle_until(lambda: _rg(world)["Status"] == "available" and _rg(world)["PendingModifiedValues"] == {})
    world.call("ModifyUserGroup", UserGroupId="team", UserIdsToAdd=["robot"])
    world.settle_until(lambda: _security(world, "rg-001").iam_realm == REALM
                       and _security(world, "rg-002").iam_realm == REALM)
    world.settle_until(lambda: world.call("DescribeUserGroups", UserGroupId="team")["UserGroups"][0]["Status"]
                       == "active")


def test_a_replaced_primary_keeps_the_authenticator(world: World) -> None:
    _make(world)
    starts = len(world.runtime.calls_of("start"))
    world.runtime.crash(_node("rg-001"))
    world.settle_until(lambda: len(world.runtime.calls_of("start")) > starts and _rg(world)["Status"] == "available")
    for member_id in ("rg-001", "rg-002"):
        assert _security(world, member_id).iam_realm == REALM
