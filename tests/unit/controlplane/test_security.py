"""AUTH tokens, in-transit encryption and RBAC user groups on caches: AWS's validation, the one TLS
gate (refusing for now, at the very end), and, with the gate opened as the wiring step will open
it, what is recorded, what Describe shows while pending, and the users' and groups' status
machines around the one hook (`security_applied`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.handlers import security
from controlplane.state.acl import desired_security, node_acl
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.users import User
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

TOKEN = "Token-of-twenty-chars"
TOKEN2 = "Second-token-12345678"
TOKEN3 = "Third-token-123456789"
PW = "a-password-of-20-chars"
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
         "NumCacheClusters": 2}


def _refused(world: World, operation: str, code: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


def _rg(world: World, gid: str = "rg") -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId=gid)["ReplicationGroups"][0]


def _key(kind: str, rid: str) -> ResourceKey:
    return ResourceKey(kind, "123456789012", "us-east-1", rid)


def _record(world: World, gid: str = "rg") -> ReplicationGroup:
    rec = world.service.store.get(_key(ReplicationGroup.KIND, gid), ReplicationGroup)
    assert rec is not None
    return rec


def _nodes_apply(world: World, gid: str = "rg") -> None:
    """What the wiring step's reconciler does once every node enforces the group's security."""
    store = world.service.store

    def applied(r: ReplicationGroup) -> None:
        r.status.security_applied = desired_security(store, r)

    store.update(_key(ReplicationGroup.KIND, gid), ReplicationGroup, applied)


def _rbac(world: World) -> None:
    world.call("CreateUser", UserId="app", UserName="app", Engine="redis", AccessString="on ~app:* +@all",
               Passwords=[PW])
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["default", "app"])
    world.settle()


@pytest.fixture
def tls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gate opened, as the wiring step will open it once nodes serve TLS."""
    monkeypatch.setattr(security, "require_transit_supported", lambda enabled: None)
    yield


# ---- refused for now, by the one gate, after every other check ----------------------------------


def test_tls_auth_tokens_and_user_groups_are_refused_by_the_gate(world: World) -> None:
    _rbac(world)
    for params in ({"TransitEncryptionEnabled": True}, {"TransitEncryptionEnabled": True, "AuthToken": TOKEN},
                   {"TransitEncryptionEnabled": True, "UserGroupIds": ["team"]}):
        message = _refused(world, "CreateReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="rg",
                           **GROUP, **params)
        assert "not supported by elasticache-local yet" in message and TOKEN not in message
    _refused(world, "CreateCacheCluster", "InvalidParameterCombination", CacheClusterId="c", Engine="redis",
             CacheNodeType="cache.t3.micro", TransitEncryptionEnabled=True, AuthToken=TOKEN)
    assert world.call("DescribeReplicationGroups")["ReplicationGroups"] == []
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    assert world.call("DescribeUserGroups")["UserGroups"][0]["ReplicationGroups"] == []


@pytest.mark.parametrize(("params", "code", "needle"), [
    ({"AuthToken": TOKEN}, "InvalidParameterCombination", "requires TransitEncryptionEnabled"),
    ({"UserGroupIds": ["team"]}, "InvalidParameterCombination", "require TransitEncryptionEnabled"),
    ({"TransitEncryptionMode": "preferred"}, "InvalidParameterCombination", "requires TransitEncryptionEnabled"),
    ({"TransitEncryptionEnabled": True, "TransitEncryptionMode": "sometimes"}, "InvalidParameterValue",
     "preferred, required"),
    ({"TransitEncryptionEnabled": True, "AuthToken": "short"}, "InvalidParameterValue", "16-128"),
    ({"TransitEncryptionEnabled": True, "AuthToken": "percent%-is-not-allowed"}, "InvalidParameterValue", "! & #"),
    ({"TransitEncryptionEnabled": True, "AuthToken": TOKEN, "UserGroupIds": ["team"]}, "InvalidParameterCombination",
     "AUTH or RBAC"),
    ({"TransitEncryptionEnabled": True, "UserGroupIds": ["nope"]}, "UserGroupNotFound", "nope"),
    ({"TransitEncryptionEnabled": True, "UserGroupIds": ["team", "other"]}, "InvalidParameterCombination",
     "at most 1 user group"),
    ({"TransitEncryptionEnabled": True, "UserGroupIds": ["vteam"]}, "InvalidParameterCombination",
     "uses redis user groups"),
    ({"TransitEncryptionEnabled": True, "UserGroupIds": ["team"], "EngineVersion": "5.0.6"},
     "InvalidParameterCombination", "needs engine version 6.0"),
])
def test_create_refusals_before_the_gate(world: World, params: dict[str, Any], code: str, needle: str) -> None:
    _rbac(world)
    world.call("CreateUserGroup", UserGroupId="other", Engine="redis", UserIds=["default"])
    world.call("CreateUser", UserId="vdefault", UserName="default", Engine="valkey", AccessString="on",
               Passwords=[PW])
    world.call("CreateUserGroup", UserGroupId="vteam", Engine="valkey", UserIds=["vdefault"])
    world.settle()
    message = _refused(world, "CreateReplicationGroup", code, ReplicationGroupId="rg", **GROUP, **params)
    assert needle in message
    assert TOKEN not in message


def test_memcached_takes_no_auth_token(world: World) -> None:
    _refused(world, "CreateCacheCluster", "InvalidParameterCombination", CacheClusterId="mc", Engine="memcached",
             CacheNodeType="cache.t3.micro", TransitEncryptionEnabled=True, AuthToken=TOKEN)
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro")
    world.settle()
    assert "Memcached" in _refused(world, "ModifyCacheCluster", "InvalidParameterCombination", CacheClusterId="mc",
                                   AuthToken=TOKEN, AuthTokenUpdateStrategy="ROTATE")


def test_modify_refusals_on_a_plain_group(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP)
    world.settle()
    _rbac(world)
    cases = [
        ({"AuthToken": TOKEN}, "requires TransitEncryptionEnabled"),
        ({"UserGroupIdsToAdd": ["team"]}, "require TransitEncryptionEnabled"),
        ({"TransitEncryptionEnabled": True}, "TransitEncryptionMode to preferred"),
        ({"TransitEncryptionEnabled": True, "TransitEncryptionMode": "required"}, "TransitEncryptionMode to preferred"),
        ({"TransitEncryptionMode": "required"}, "requires TransitEncryptionEnabled"),
        ({"AuthTokenUpdateStrategy": "SET"}, "requires AuthToken"),
        ({"AuthTokenUpdateStrategy": "DELETE"}, "only when moving to RBAC"),
    ]
    for params, needle in cases:
        assert needle in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                  ReplicationGroupId="rg", ApplyImmediately=True, **params)
    assert "not supported by elasticache-local yet" in _refused(
        world, "ModifyReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="rg",
        TransitEncryptionEnabled=True, TransitEncryptionMode="preferred")
    assert _rg(world)["TransitEncryptionEnabled"] is False and _rg(world)["Status"] == "available"


# ---- recorded, with the gate opened -------------------------------------------------------------


def test_a_group_with_tls_and_a_token(world: World, tls: None) -> None:
    out = world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
                     AuthToken=TOKEN)["ReplicationGroup"]
    assert out["AuthTokenEnabled"] is True and out["TransitEncryptionEnabled"] is True
    assert out["TransitEncryptionMode"] == "required" and "AuthTokenLastModifiedDate" in out
    world.settle()
    assert _rg(world)["Status"] == "creating"  # the nodes run, but nothing recorded them enforcing TLS and AUTH
    rec = _record(world)
    assert rec.spec.security.auth_tokens == [TOKEN] and TOKEN not in repr(rec)
    assert node_acl(world.service.store, rec).tokens == (TOKEN,)
    member = world.call("DescribeCacheClusters", CacheClusterId="rg-001")["CacheClusters"][0]
    assert member["TransitEncryptionEnabled"] is True and member["AuthTokenEnabled"] is True
    _nodes_apply(world)
    assert _rg(world)["Status"] == "available"
    # SET only after ROTATE; ROTATE keeps two tokens, the oldest dropped.
    assert "only after ROTATE" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                           ReplicationGroupId="rg", AuthToken=TOKEN2, AuthTokenUpdateStrategy="SET")
    for bad in ("has/slash-0123456789", 'has"quote-0123456789', "has@at-0123456789", "short"):
        message = _refused(world, "ModifyReplicationGroup", "InvalidParameterValue", ReplicationGroupId="rg",
                           AuthToken=bad)
        assert bad not in message
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN2,
                     ApplyImmediately=True)["ReplicationGroup"]  # ROTATE is the default
    assert out["PendingModifiedValues"] == {"AuthTokenStatus": "ROTATING"}
    assert _record(world).spec.security.auth_tokens == [TOKEN, TOKEN2]
    world.settle()
    assert _rg(world)["Status"] == "modifying"  # until every node has the new token
    _nodes_apply(world)
    assert _rg(world)["Status"] == "available"
    assert "PendingModifiedValues" not in _rg(world) or _rg(world)["PendingModifiedValues"] == {}
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN3, AuthTokenUpdateStrategy="ROTATE")
    assert _record(world).spec.security.auth_tokens == [TOKEN2, TOKEN3]
    world.settle()
    _nodes_apply(world)
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN,
                     AuthTokenUpdateStrategy="SET")["ReplicationGroup"]
    assert out["PendingModifiedValues"] == {"AuthTokenStatus": "SETTING"}
    assert _record(world).spec.security.auth_tokens == [TOKEN]


def test_rotate_on_a_group_without_a_token_accepts_both(world: World, tls: None) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True)
    world.settle()
    _nodes_apply(world)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN, AuthTokenUpdateStrategy="ROTATE")
    acl = node_acl(world.service.store, _record(world))
    assert acl.tokens == (TOKEN,) and acl.open is True
    world.settle()
    _nodes_apply(world)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN2, AuthTokenUpdateStrategy="SET")
    acl = node_acl(world.service.store, _record(world))
    assert acl.tokens == (TOKEN2,) and acl.open is False


def test_tls_on_a_running_group_in_two_steps_and_back(world: World, tls: None) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP)
    world.settle()
    _nodes_apply(world)
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", TransitEncryptionEnabled=True,
                     TransitEncryptionMode="preferred")["ReplicationGroup"]
    assert out["TransitEncryptionEnabled"] is False
    assert out["PendingModifiedValues"] == {"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"}
    world.settle()
    _nodes_apply(world)
    assert _rg(world)["TransitEncryptionMode"] == "preferred"
    assert "preferred first" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                         ReplicationGroupId="rg", TransitEncryptionEnabled=False,
                                         TransitEncryptionMode="required")
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", TransitEncryptionMode="required")
    world.settle()
    _nodes_apply(world)
    assert _rg(world)["TransitEncryptionMode"] == "required"
    assert "preferred first" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                         ReplicationGroupId="rg", TransitEncryptionEnabled=False)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", TransitEncryptionMode="preferred")
    world.settle()
    _nodes_apply(world)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", TransitEncryptionEnabled=False)
    world.settle()
    _nodes_apply(world)
    group = _rg(world)
    assert group["TransitEncryptionEnabled"] is False and "TransitEncryptionMode" not in group


def test_from_auth_to_rbac_and_the_status_machines_around_the_hook(world: World, tls: None) -> None:
    _rbac(world)
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
               AuthToken=TOKEN)
    world.settle()
    _nodes_apply(world)
    assert "DELETE with UserGroupIdsToAdd" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                                       ReplicationGroupId="rg", UserGroupIdsToAdd=["team"])
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", UserGroupIdsToAdd=["team"],
                     AuthTokenUpdateStrategy="DELETE")["ReplicationGroup"]
    assert out["UserGroupIds"] == [] and out["PendingModifiedValues"] == {"UserGroups": {"UserGroupIdsToAdd": ["team"]}}
    world.settle()
    group = world.call("DescribeUserGroups", UserGroupId="team")["UserGroups"][0]
    assert group["ReplicationGroups"] == ["rg"] and group["Status"] == "modifying"  # until the nodes have it
    assert "associated with replication group(s) rg" in _refused(world, "DeleteUserGroup", "InvalidUserGroupState",
                                                                 UserGroupId="team")
    acl = node_acl(world.service.store, _record(world))
    assert acl.tokens == () and [u.name for u in acl.users] == ["default", "app"]
    app = acl.users[1]
    assert app.rules[:3] == ("on", "~app:*", "+@all") and app.rules[3].startswith("#") and PW not in str(acl)
    _nodes_apply(world)  # THE hook: every node has it
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUserGroups", UserGroupId="team")["UserGroups"][0]["Status"] == "active"
    assert _rg(world)["UserGroupIds"] == ["team"] and _rg(world)["AuthTokenEnabled"] is False
    # A member's change waits for the nodes too.
    assert world.call("ModifyUser", UserId="app", AppendAccessString="-flushall")["Status"] == "modifying"
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "modifying"
    _nodes_apply(world)
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "active"
    # A deleted member leaves the group, and is gone once the nodes dropped it.
    world.call("DeleteUser", UserId="app")
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "deleting"
    _nodes_apply(world)
    for _ in range(3):
        world.clock.advance(2)
        world.settle()
    _refused(world, "DescribeUsers", "UserNotFound", UserId="app")
    # Back to AUTH: a token with the groups removed; the group can go then.
    assert "AUTH or RBAC" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                      ReplicationGroupId="rg", AuthToken=TOKEN2)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN2, RemoveUserGroups=True)
    world.settle()
    _nodes_apply(world)
    world.clock.advance(2)
    world.settle()
    assert _rg(world)["UserGroupIds"] == [] and _rg(world)["AuthTokenEnabled"] is True
    world.call("DeleteUserGroup", UserGroupId="team")
    world.settle()
    assert world.call("DescribeUserGroups")["UserGroups"] == []


def test_a_standalone_redis_cluster_with_a_token(world: World, tls: None) -> None:
    out = world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
                     TransitEncryptionEnabled=True, AuthToken=TOKEN)["CacheCluster"]
    assert out["AuthTokenEnabled"] is True and out["TransitEncryptionEnabled"] is True
    world.settle()
    store = world.service.store
    store.update(_key(CacheCluster.KIND, "web"), CacheCluster,
                 lambda r: setattr(r.status, "security_applied", desired_security(store, r)))
    before = store.get(_key(CacheCluster.KIND, "web"), CacheCluster)
    assert before is not None
    out = world.call("ModifyCacheCluster", CacheClusterId="web", AuthToken=TOKEN2,
                     AuthTokenUpdateStrategy="ROTATE")["CacheCluster"]
    assert out["PendingModifiedValues"] == {"AuthTokenStatus": "ROTATING"}
    after = store.get(_key(CacheCluster.KIND, "web"), CacheCluster)
    assert after is not None and after.generation == before.generation + 1
    assert after.spec.security.auth_tokens == [TOKEN, TOKEN2]
    users = store.records(User)
    assert all(TOKEN not in u.model_dump_json() for u in users)


def test_users_and_groups_stay_within_the_engine_version_of_their_caches(world: World, tls: None) -> None:
    _rbac(world)
    world.call("CreateUser", UserId="reader", UserName="reader", Engine="redis", AccessString="on %R~* +@read",
               Passwords=[PW])
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, EngineVersion="6.2",
               TransitEncryptionEnabled=True, UserGroupIds=["team"])
    world.settle()
    _nodes_apply(world)
    world.clock.advance(2)
    world.settle()
    assert "needs 7.0 or later" in _refused(world, "ModifyUser", "InvalidParameterCombination", UserId="app",
                                            AppendAccessString="%W~logs:*")
    assert "needs 7.0 or later" in _refused(world, "ModifyUserGroup", "InvalidParameterCombination",
                                            UserGroupId="team", UserIdsToAdd=["reader"])
    assert world.call("ModifyUser", UserId="app", AppendAccessString="&news:*")["MinimumEngineVersion"] == "6.2"
