"""AUTH tokens, in-transit encryption and RBAC user groups on caches: AWS's validation, the one TLS
gate (an engine built with TLS, at the very end), what is recorded, what the nodes (the fake
runtime) are started with and changed to, and the users' and groups' status machines around the
one hook (`security_applied`, written by the reconciler once every node has it)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.state.acl import desired_security, node_acl
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
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


def _node(member_id: str) -> str:
    return f"123456789012-us-east-1-{member_id}-0001"


def _rbac(world: World) -> None:
    world.call("CreateUser", UserId="app", UserName="app", Engine="redis", AccessString="on ~app:* +@all",
               Passwords=[PW])
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["default", "app"])
    world.settle()


# ---- the gate: an engine built with TLS; TLS on CreateCacheCluster is Memcached's ---------------------


def test_tls_refused_when_the_engine_has_no_tls(world: World) -> None:
    _rbac(world)
    world.runtime.without_tls.add("redis")
    for params in ({"TransitEncryptionEnabled": True}, {"TransitEncryptionEnabled": True, "AuthToken": TOKEN},
                   {"TransitEncryptionEnabled": True, "UserGroupIds": ["team"]}):
        message = _refused(world, "CreateReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="rg",
                           **GROUP, **params)
        assert "apt install redis-server" in message and TOKEN not in message
    assert "CreateReplicationGroup" in _refused(world, "CreateCacheCluster", "InvalidParameterCombination",
                                                CacheClusterId="c", Engine="redis", CacheNodeType="cache.t3.micro",
                                                TransitEncryptionEnabled=True, AuthToken=TOKEN)
    assert "1.6.12" in _refused(world, "CreateCacheCluster", "InvalidParameterCombination", CacheClusterId="c",
                                Engine="memcached", EngineVersion="1.6.6", CacheNodeType="cache.t3.micro",
                                TransitEncryptionEnabled=True)
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
    assert "enable it (TransitEncryptionMode preferred) first" in _refused(
        world, "ModifyReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="rg",
        TransitEncryptionEnabled=True, TransitEncryptionMode="preferred", AuthToken=TOKEN)
    assert _rg(world)["TransitEncryptionEnabled"] is False and _rg(world)["Status"] == "available"


# ---- recorded, and applied to the nodes -------------------------------------------------------------


def test_a_group_with_tls_and_a_token(world: World) -> None:
    out = world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
                     AuthToken=TOKEN)["ReplicationGroup"]
    assert out["AuthTokenEnabled"] is True and out["TransitEncryptionEnabled"] is True
    assert out["TransitEncryptionMode"] == "required" and "AuthTokenLastModifiedDate" in out
    world.settle()
    assert _rg(world)["Status"] == "available"  # every node started with TLS and the token
    for member_id in ("rg-001", "rg-002"):
        security = world.runtime.config_of(_node(member_id)).security
        assert security is not None and security.tls is not None and security.tls.mode == "required"
        assert security.admin.name == "elasticache-local" and security.admin.password
        assert [(u.name, u.rules) for u in security.users] == [
            ("default", ("on", f">{TOKEN}", "~*", "&*", "+@all"))]
    rec = _record(world)
    assert rec.spec.security.auth_tokens == [TOKEN] and TOKEN not in repr(rec)
    assert node_acl(world.service.store, rec).tokens == (TOKEN,)
    member = world.call("DescribeCacheClusters", CacheClusterId="rg-001")["CacheClusters"][0]
    assert member["TransitEncryptionEnabled"] is True and member["AuthTokenEnabled"] is True
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
    assert _rg(world)["Status"] == "modifying"  # until every node has the new token
    world.runtime.refuse_commands(_node("rg-002"))  # a replica that cannot take it yet
    world.settle()
    assert _rg(world)["Status"] == "modifying" and _record(world).status.security_applied is not None
    assert _record(world).status.security_applied.auth_seq == 1  # THE hook: not before every node has it
    world.runtime.refuse_commands(_node("rg-002"), False)
    world.clock.advance(1)
    world.settle()
    assert _rg(world)["Status"] == "available"
    both = ("on", f">{TOKEN}", f">{TOKEN2}", "~*", "&*", "+@all")
    assert {(n, users[0].rules) for n, users in world.runtime.applied_users[-2:]} == {
        (_node("rg-001"), both), (_node("rg-002"), both)}
    assert world.runtime.calls_of("start").count(_node("rg-001")) == 1  # live: no restart
    assert "PendingModifiedValues" not in _rg(world) or _rg(world)["PendingModifiedValues"] == {}
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN3, AuthTokenUpdateStrategy="ROTATE")
    assert _record(world).spec.security.auth_tokens == [TOKEN2, TOKEN3]
    world.settle()
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN,
                     AuthTokenUpdateStrategy="SET")["ReplicationGroup"]
    assert out["PendingModifiedValues"] == {"AuthTokenStatus": "SETTING"}
    assert _record(world).spec.security.auth_tokens == [TOKEN]


def test_rotate_on_a_group_without_a_token_accepts_both(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True)
    world.settle()
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN, AuthTokenUpdateStrategy="ROTATE")
    acl = node_acl(world.service.store, _record(world))
    assert acl.tokens == (TOKEN,) and acl.open is True
    world.settle()
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN2, AuthTokenUpdateStrategy="SET")
    acl = node_acl(world.service.store, _record(world))
    assert acl.tokens == (TOKEN2,) and acl.open is False


def test_tls_mode_changes_roll_the_nodes_replicas_first(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
               TransitEncryptionMode="preferred")
    world.settle()
    assert _rg(world)["TransitEncryptionMode"] == "preferred"
    assert world.runtime.config_of(_node("rg-001")).security.tls.mode == "preferred"  # type: ignore[union-attr]
    starts = len(world.runtime.calls_of("start"))
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", TransitEncryptionMode="required",
                     ApplyImmediately=True)["ReplicationGroup"]
    assert out["PendingModifiedValues"] == {"TransitEncryptionMode": "required"}
    world.settle_until(lambda: _rg(world).get("TransitEncryptionMode") == "required")
    group = _rg(world)
    assert group["Status"] == "available" and group["PendingModifiedValues"] == {}
    # The replica first, then the old primary after a switchover to it: no failover, no lost write.
    assert world.runtime.calls_of("start")[starts:] == [_node("rg-002"), _node("rg-001")]
    assert group["NodeGroups"][0]["NodeGroupMembers"][0]["CurrentRole"] == "replica"
    for member_id in ("rg-001", "rg-002"):
        assert world.runtime.config_of(_node(member_id)).security.tls.mode == "required"  # type: ignore[union-attr]
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", TransitEncryptionMode="preferred",
               ApplyImmediately=True)
    world.settle_until(lambda: _rg(world).get("TransitEncryptionMode") == "preferred")
    assert world.runtime.config_of(_node("rg-002")).security.tls.mode == "preferred"  # type: ignore[union-attr]


def test_from_auth_to_rbac_and_the_status_machines_around_the_hook(world: World) -> None:
    _rbac(world)
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
               AuthToken=TOKEN)
    world.settle()
    assert "DELETE with UserGroupIdsToAdd" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                                       ReplicationGroupId="rg", UserGroupIdsToAdd=["team"])
    out = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", UserGroupIdsToAdd=["team"],
                     AuthTokenUpdateStrategy="DELETE")["ReplicationGroup"]
    assert out["UserGroupIds"] == [] and out["PendingModifiedValues"] == {"UserGroups": {"UserGroupIdsToAdd": ["team"]}}
    world.runtime.refuse_commands(_node("rg-001"))  # the primary cannot take the users yet
    world.settle()
    group = world.call("DescribeUserGroups", UserGroupId="team")["UserGroups"][0]
    assert group["ReplicationGroups"] == ["rg"] and group["Status"] == "modifying"  # until the nodes have it
    world.runtime.refuse_commands(_node("rg-001"), False)
    assert "associated with replication group(s) rg" in _refused(world, "DeleteUserGroup", "InvalidUserGroupState",
                                                                 UserGroupId="team")
    acl = node_acl(world.service.store, _record(world))
    assert acl.tokens == () and [u.name for u in acl.users] == ["default", "app"]
    app = acl.users[1]
    assert app.rules[:3] == ("on", "~app:*", "+@all") and app.rules[3].startswith("#") and PW not in str(acl)
    world.clock.advance(2)
    world.settle()  # every node takes them now: THE hook, and the group looks again
    assert world.call("DescribeUserGroups", UserGroupId="team")["UserGroups"][0]["Status"] == "active"
    names = [u.name for u in world.runtime.config_of(_node("rg-002")).security.users]  # type: ignore[union-attr]
    assert names == ["default", "app"]
    assert _rg(world)["UserGroupIds"] == ["team"] and _rg(world)["AuthTokenEnabled"] is False
    # A member's change waits for the nodes too.
    assert world.call("ModifyUser", UserId="app", AppendAccessString="-flushall")["Status"] == "modifying"
    world.runtime.refuse_commands(_node("rg-002"))
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "modifying"
    world.runtime.refuse_commands(_node("rg-002"), False)
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "active"
    # A deleted member leaves the group, and is gone once the nodes dropped it.
    world.call("DeleteUser", UserId="app")
    world.runtime.refuse_commands(_node("rg-001"))
    world.clock.advance(2)
    world.settle()
    assert world.call("DescribeUsers", UserId="app")["Users"][0]["Status"] == "deleting"
    world.runtime.refuse_commands(_node("rg-001"), False)
    for _ in range(3):
        world.clock.advance(2)
        world.settle()
    _refused(world, "DescribeUsers", "UserNotFound", UserId="app")
    # Back to AUTH: a token with the groups removed; the group can go then.
    assert "AUTH or RBAC" in _refused(world, "ModifyReplicationGroup", "InvalidParameterCombination",
                                      ReplicationGroupId="rg", AuthToken=TOKEN2)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN2, RemoveUserGroups=True)
    world.settle()
    world.clock.advance(2)
    world.settle()
    assert _rg(world)["UserGroupIds"] == [] and _rg(world)["AuthTokenEnabled"] is True
    world.call("DeleteUserGroup", UserGroupId="team")
    world.settle()
    assert world.call("DescribeUserGroups")["UserGroups"] == []


def test_a_memcached_cluster_with_tls(world: World) -> None:
    out = world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
                     NumCacheNodes=2, TransitEncryptionEnabled=True)["CacheCluster"]
    assert out["TransitEncryptionEnabled"] is True
    world.settle()
    cluster = world.call("DescribeCacheClusters", CacheClusterId="mc")["CacheClusters"][0]
    assert cluster["CacheClusterStatus"] == "available" and cluster["TransitEncryptionMode"] == "required"
    for node_id in ("0001", "0002"):
        security = world.runtime.config_of(f"123456789012-us-east-1-mc-{node_id}").security
        assert security is not None and security.tls is not None and security.users == ()
    rec = world.service.store.get(_key(CacheCluster.KIND, "mc"), CacheCluster)
    assert rec is not None and rec.status.security_applied == desired_security(world.service.store, rec)
    # The configuration endpoint speaks TLS too, with a certificate for its address.
    tls = world.hub.endpoint_tls["123456789012-us-east-1-mc-cfg"]
    assert tls is not None and tls.mode == "required" and tls.ca_file.endswith("ca.crt")
    world.call("CreateCacheCluster", CacheClusterId="plain", Engine="memcached", CacheNodeType="cache.t3.micro")
    world.settle()
    assert world.hub.endpoint_tls["123456789012-us-east-1-plain-cfg"] is None


def test_users_and_groups_stay_within_the_engine_version_of_their_caches(world: World) -> None:
    _rbac(world)
    world.call("CreateUser", UserId="reader", UserName="reader", Engine="redis", AccessString="on %R~* +@read",
               Passwords=[PW])
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP, EngineVersion="6.2",
               TransitEncryptionEnabled=True, UserGroupIds=["team"])
    world.settle()
    world.clock.advance(2)
    world.settle()
    assert "needs 7.0 or later" in _refused(world, "ModifyUser", "InvalidParameterCombination", UserId="app",
                                            AppendAccessString="%W~logs:*")
    assert "needs 7.0 or later" in _refused(world, "ModifyUserGroup", "InvalidParameterCombination",
                                            UserGroupId="team", UserIdsToAdd=["reader"])
    assert world.call("ModifyUser", UserId="app", AppendAccessString="&news:*")["MinimumEngineVersion"] == "6.2"
