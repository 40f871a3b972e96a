"""RBAC users and user groups on the fake runtime and fake clock, through botocore's own
serializer and parser: AWS's rules and errors, the built-in default user, the status machines."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.state.users import User
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

PW = "a-password-of-20-chars"
PW2 = "another-password-1234"


def _user(world: World, uid: str = "alice", name: str = "alice", **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"Passwords": [PW]} if not {"Passwords", "NoPasswordRequired",
                                                          "AuthenticationMode"} & set(extra) else {}
    return world.call("CreateUser", UserId=uid, UserName=name, Engine=extra.pop("Engine", "redis"),
                      AccessString=extra.pop("AccessString", "on ~* +@all"), **params, **extra)


def _refused(world: World, operation: str, code: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


def _users(world: World, **params: Any) -> dict[str, dict[str, Any]]:
    return {u["UserId"]: u for u in world.call("DescribeUsers", **params)["Users"]}


def _group(world: World, gid: str = "team") -> dict[str, Any]:
    return world.call("DescribeUserGroups", UserGroupId=gid)["UserGroups"][0]


def test_the_built_in_default_user_is_there_and_cannot_be_changed(world: World) -> None:
    default = _users(world)["default"]
    assert default == {"UserId": "default", "UserName": "default", "Status": "active", "Engine": "redis",
                       "MinimumEngineVersion": "6.0", "AccessString": "on ~* +@all", "UserGroupIds": [],
                       "Authentication": {"Type": "no-password"},
                       "ARN": "arn:aws:elasticache:us-east-1:123456789012:user:default"}
    assert "cannot be modified" in _refused(world, "ModifyUser", "InvalidParameterValue", UserId="default",
                                            AccessString="off")
    assert "cannot be deleted" in _refused(world, "DeleteUser", "InvalidParameterValue", UserId="default")
    _refused(world, "CreateUser", "UserAlreadyExists", UserId="Default", UserName="x", Engine="redis",
             AccessString="on", NoPasswordRequired=True)


def test_create_user_answers_active_and_never_shows_a_password(world: World) -> None:
    out = _user(world, uid="Alice", name="alice", Engine="REDIS", Passwords=[PW, PW2],
                AccessString="on ~app:* -@all +@read", Tags=[{"Key": "team", "Value": "a"}])
    assert out["UserId"] == "alice" and out["Engine"] == "redis" and out["Status"] == "active"
    assert out["Authentication"] == {"Type": "password", "PasswordCount": 2}
    assert out["AccessString"] == "on ~app:* -@all +@read" and out["UserGroupIds"] == []
    stored = world.service.store.get(world.service.services.context("123456789012", "us-east-1")
                                     .key(User.KIND, "alice"), User)
    assert stored is not None and PW not in stored.model_dump_json() and PW not in repr(stored)
    assert stored.acl_rules() == ["on", "~app:*", "-@all", "+@read", *(f"#{h}" for h in stored.spec.password_hashes)]
    assert world.call("ListTagsForResource", ResourceName=out["ARN"])["TagList"] == [{"Key": "team", "Value": "a"}]
    _refused(world, "CreateUser", "UserAlreadyExists", UserId="ALICE", UserName="b", Engine="redis", AccessString="on",
             Passwords=[PW])
    # AWS's own example lists two users with the same UserName: names are not unique between users.
    assert _user(world, uid="alice2", name="alice")["UserName"] == "alice"


@pytest.mark.parametrize(("params", "code", "needle"), [
    ({"Passwords": ["short"]}, "InvalidParameterValue", "16-128 printable"),
    ({"Passwords": ["x" * 129]}, "InvalidParameterValue", "16-128 printable"),
    ({"Passwords": ["tab\there-0123456789"]}, "InvalidParameterValue", "16-128 printable"),
    ({"Passwords": [PW, PW2, PW + "x"]}, "InvalidParameterValue", "at most 2 passwords"),
    ({"Passwords": [PW, PW]}, "InvalidParameterValue", "different"),
    ({"Passwords": [PW], "NoPasswordRequired": True}, "InvalidParameterCombination", "NoPasswordRequired"),
    ({"NoPasswordRequired": False}, "InvalidParameterValue", "needs Passwords"),
    ({}, "InvalidParameterValue", "needs Passwords"),
    ({"AuthenticationMode": {"Type": "password"}}, "InvalidParameterValue", "at least one password"),
    ({"AuthenticationMode": {"Type": "no-password-required", "Passwords": [PW]}}, "InvalidParameterCombination",
     "takes no Passwords"),
    ({"AuthenticationMode": {"Type": "iam"}, "Passwords": [PW]}, "InvalidParameterCombination", "cannot be combined"),
    ({"AuthenticationMode": {"Type": "iam"}}, "InvalidParameterCombination", "same UserId and UserName"),
    ({"Passwords": [PW], "Engine": "memcached"}, "InvalidParameterValue", "Valid values: redis, valkey"),
    ({"Passwords": [PW], "AccessString": "on ~* +flushal"}, "InvalidParameterValue", "Unknown command"),
    ({"Passwords": [PW], "UserName": "has space"}, "InvalidParameterValue", "without spaces"),
    ({"Passwords": [PW], "UserId": "bad_id"}, "InvalidParameterValue", "must begin with a letter"),
])
def test_create_user_refusals(world: World, params: dict[str, Any], code: str, needle: str) -> None:
    request = {"UserId": "bob", "UserName": "robert", "Engine": "redis", "AccessString": "on ~* +@all", **params}
    message = _refused(world, "CreateUser", code, **request)
    assert needle in message
    assert PW not in message and "short" not in message  # a password is never repeated back
    assert "bob" not in _users(world)


def test_authentication_modes(world: World) -> None:
    iam = _user(world, uid="svc", name="svc", AuthenticationMode={"Type": "iam"})
    assert iam["Authentication"] == {"Type": "iam"} and iam["MinimumEngineVersion"] == "7.0"
    open_user = _user(world, uid="guest", name="guest", AuthenticationMode={"Type": "no-password-required"})
    assert open_user["Authentication"] == {"Type": "no-password"}
    pw = _user(world, uid="pw", name="pw", AuthenticationMode={"Type": "password", "Passwords": [PW]},
               Engine="valkey", AccessString="on ~* &* +@all")
    assert pw["Authentication"] == {"Type": "password", "PasswordCount": 1}
    assert pw["MinimumEngineVersion"] == "7.2"


def test_the_user_quota(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.handlers import users

    monkeypatch.setattr(users, "MAX_USERS", 2)  # the default user and one more
    _user(world)
    _refused(world, "CreateUser", "UserQuotaExceeded", UserId="bob", UserName="bob", Engine="redis",
             AccessString="on", Passwords=[PW])


def test_modify_user_reads_modifying_then_active(world: World) -> None:
    _user(world, AccessString="on ~a:* +get")
    out = world.call("ModifyUser", UserId="alice", AppendAccessString="+set")
    assert out["Status"] == "modifying" and out["AccessString"] == "on ~a:* +get +set"
    _refused(world, "ModifyUser", "InvalidUserState", UserId="alice", AccessString="off")
    world.settle()
    assert _users(world)["alice"]["Status"] == "active"
    out = world.call("ModifyUser", UserId="alice", AccessString="off ~* +@read", Passwords=[PW, PW2])
    assert out["AccessString"] == "off ~* +@read" and out["Authentication"]["PasswordCount"] == 2
    world.settle()
    out = world.call("ModifyUser", UserId="alice", NoPasswordRequired=True)
    assert out["Authentication"] == {"Type": "no-password"}


def test_modify_user_refusals(world: World) -> None:
    _user(world)
    _refused(world, "ModifyUser", "UserNotFound", UserId="nobody", AccessString="on")
    assert "together" in _refused(world, "ModifyUser", "InvalidParameterCombination", UserId="alice",
                                  AccessString="on", AppendAccessString="+get")
    assert "No modifications" in _refused(world, "ModifyUser", "InvalidParameterCombination", UserId="alice")
    _refused(world, "ModifyUser", "InvalidParameterValue", UserId="alice", AppendAccessString="reset")
    _refused(world, "ModifyUser", "InvalidParameterValue", UserId="alice", Engine="memcached")
    assert _users(world)["alice"]["Status"] == "active"


def test_delete_user_reads_deleting_then_is_gone(world: World) -> None:
    _user(world)
    assert world.call("DeleteUser", UserId="alice")["Status"] == "deleting"
    _refused(world, "DeleteUser", "InvalidUserState", UserId="alice")
    world.settle()
    _refused(world, "DescribeUsers", "UserNotFound", UserId="alice")
    _refused(world, "DeleteUser", "UserNotFound", UserId="alice")


def test_describe_users_filters_and_pages(world: World) -> None:
    for i in range(24):
        _user(world, uid=f"u{i:02d}", name=f"n{i}", Engine="valkey" if i % 2 else "redis")
    assert len(_users(world)) == 25
    assert set(_users(world, Engine="valkey")) == {f"u{i:02d}" for i in range(1, 24, 2)}
    assert list(_users(world, UserId="U03")) == ["u03"]
    picked = _users(world, Filters=[{"Name": "user-id", "Values": ["u01", "U02", "nobody"]}])
    assert set(picked) == {"u01", "u02"}
    _refused(world, "DescribeUsers", "InvalidParameterCombination", Filters=[{"Name": "colour", "Values": ["x"]}])
    first = world.call("DescribeUsers", MaxRecords=20)
    assert len(first["Users"]) == 20 and first["Users"][0]["UserId"] == "default"
    rest = world.call("DescribeUsers", MaxRecords=20, Marker=first["Marker"])
    assert len(rest["Users"]) == 5 and "Marker" not in rest
    assert {u["UserId"] for u in first["Users"] + rest["Users"]} == set(_users(world))
    _refused(world, "DescribeUsers", "InvalidParameterValue", MaxRecords=10)
    _refused(world, "DescribeUsers", "UserNotFound", UserId="nobody")


def test_tags_on_users_and_the_default_user(world: World) -> None:
    arn = "arn:aws:elasticache:us-east-1:123456789012:user:default"
    world.call("AddTagsToResource", ResourceName=arn, Tags=[{"Key": "k", "Value": "v"}])
    assert world.call("ListTagsForResource", ResourceName=arn)["TagList"] == [{"Key": "k", "Value": "v"}]
    world.call("RemoveTagsFromResource", ResourceName=arn, TagKeys=["k"])
    assert world.call("ListTagsForResource", ResourceName=arn)["TagList"] == []
    _refused(world, "ListTagsForResource", "UserNotFound",
             ResourceName="arn:aws:elasticache:us-east-1:123456789012:user:nobody")


# ---- user groups --------------------------------------------------------------------------------


def test_a_user_group_is_creating_then_active(world: World) -> None:
    _user(world)
    out = world.call("CreateUserGroup", UserGroupId="Team", Engine="redis", UserIds=["default", "ALICE"],
                     Tags=[{"Key": "k", "Value": "v"}])
    assert out == {"UserGroupId": "team", "Status": "creating", "Engine": "redis", "UserIds": ["default", "alice"],
                   "MinimumEngineVersion": "6.0", "ReplicationGroups": [], "ServerlessCaches": [],
                   "ARN": "arn:aws:elasticache:us-east-1:123456789012:usergroup:team"}
    _refused(world, "ModifyUserGroup", "InvalidUserGroupState", UserGroupId="team", UserIdsToRemove=["alice"])
    world.settle()
    assert _group(world)["Status"] == "active"
    assert _users(world)["alice"]["UserGroupIds"] == ["team"]
    assert world.call("ListTagsForResource", ResourceName=out["ARN"])["TagList"] == [{"Key": "k", "Value": "v"}]


def test_create_user_group_refusals(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.handlers import user_groups

    _user(world)
    _user(world, uid="mydefault", name="default")
    _user(world, uid="vk", name="vk", Engine="valkey")
    base = {"UserGroupId": "g", "Engine": "redis"}
    assert "default" in _refused(world, "CreateUserGroup", "DefaultUserRequired", **base)
    _refused(world, "CreateUserGroup", "DefaultUserRequired", **base, UserIds=["alice"])
    _refused(world, "CreateUserGroup", "DuplicateUserName", **base, UserIds=["default", "mydefault"])
    _refused(world, "CreateUserGroup", "UserNotFound", **base, UserIds=["default", "ghost"])
    assert "redis user group holds only redis users" in _refused(
        world, "CreateUserGroup", "InvalidParameterValue", **base, UserIds=["default", "vk"])
    assert "authenticate" in _refused(world, "CreateUserGroup", "InvalidParameterValue", UserGroupId="g",
                                      Engine="valkey", UserIds=["default", "vk"])
    _refused(world, "CreateUserGroup", "InvalidParameterValue", **base, UserIds=["default", "alice", "ALICE"])
    _refused(world, "CreateUserGroup", "InvalidParameterValue", UserGroupId="g", Engine="memcached",
             UserIds=["default"])
    monkeypatch.setattr(user_groups, "MAX_USERS_PER_GROUP", 1)
    _refused(world, "CreateUserGroup", "UserGroupQuotaExceeded", **base, UserIds=["default", "alice"])
    monkeypatch.setattr(user_groups, "MAX_GROUPS", 1)
    world.call("CreateUserGroup", **base, UserIds=["default"])
    _refused(world, "CreateUserGroup", "UserGroupAlreadyExists", **base, UserIds=["default"])
    _refused(world, "CreateUserGroup", "UserGroupQuotaExceeded", UserGroupId="h", Engine="redis", UserIds=["default"])
    # A valkey group takes valkey users, and redis users that authenticate.
    monkeypatch.setattr(user_groups, "MAX_GROUPS", 100)
    monkeypatch.setattr(user_groups, "MAX_USERS_PER_GROUP", 100)
    world.call("ModifyUser", UserId="mydefault", Passwords=[PW])
    world.settle()
    out = world.call("CreateUserGroup", UserGroupId="vg", Engine="valkey", UserIds=["mydefault", "vk", "alice"])
    assert out["MinimumEngineVersion"] == "7.2"


def test_modify_user_group_shows_pending_changes_until_applied(world: World) -> None:
    _user(world)
    _user(world, uid="bob", name="bob")
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["default", "alice"])
    world.settle()
    out = world.call("ModifyUserGroup", UserGroupId="team", UserIdsToAdd=["bob"], UserIdsToRemove=["alice"])
    assert out["Status"] == "modifying" and out["UserIds"] == ["default", "alice"]
    assert out["PendingChanges"] == {"UserIdsToAdd": ["bob"], "UserIdsToRemove": ["alice"]}
    world.settle()  # no replication group uses it: nothing to wait for
    group = _group(world)
    assert group["Status"] == "active" and group["UserIds"] == ["default", "bob"] and "PendingChanges" not in group
    assert _users(world)["alice"]["UserGroupIds"] == [] and _users(world)["bob"]["UserGroupIds"] == ["team"]


def test_modify_user_group_refusals(world: World) -> None:
    _user(world)
    _user(world, uid="mydefault", name="default", NoPasswordRequired=True)
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["default", "alice"])
    world.settle()
    _refused(world, "ModifyUserGroup", "UserGroupNotFound", UserGroupId="nope", UserIdsToAdd=["alice"])
    _refused(world, "ModifyUserGroup", "DefaultUserRequired", UserGroupId="team", UserIdsToRemove=["default"])
    _refused(world, "ModifyUserGroup", "DuplicateUserName", UserGroupId="team", UserIdsToAdd=["mydefault"])
    _refused(world, "ModifyUserGroup", "InvalidParameterCombination", UserGroupId="team", UserIdsToAdd=["alice"],
             UserIdsToRemove=["alice"])
    _refused(world, "ModifyUserGroup", "InvalidParameterCombination", UserGroupId="team")
    _refused(world, "ModifyUserGroup", "InvalidParameterValue", UserGroupId="team", UserIdsToAdd=["alice"])
    _refused(world, "ModifyUserGroup", "InvalidParameterValue", UserGroupId="team", UserIdsToRemove=["mydefault"])
    _refused(world, "ModifyUserGroup", "UserNotFound", UserGroupId="team", UserIdsToAdd=["ghost"])
    assert "authenticate" in _refused(world, "ModifyUserGroup", "InvalidParameterValue", UserGroupId="team",
                                      Engine="valkey")
    # A swap of the default user, as AWS documents it.
    world.call("ModifyUserGroup", UserGroupId="team", UserIdsToAdd=["mydefault"], UserIdsToRemove=["default"])
    world.settle()
    assert _group(world)["UserIds"] == ["alice", "mydefault"]


def test_deleting_a_user_takes_it_out_of_its_groups(world: World) -> None:
    _user(world)
    _user(world, uid="mydefault", name="default", NoPasswordRequired=True)
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["mydefault", "alice"])
    world.settle()
    assert "default user" in _refused(world, "DeleteUser", "DefaultUserAssociatedToUserGroup", UserId="mydefault")
    out = world.call("DeleteUser", UserId="alice")
    assert out["Status"] == "deleting" and out["UserGroupIds"] == ["team"]
    assert _group(world)["PendingChanges"] == {"UserIdsToRemove": ["alice"]}
    world.settle()
    assert "alice" not in _users(world) and _group(world)["UserIds"] == ["mydefault"]
    # Not in a group any more, the replaced default user can go.
    world.call("ModifyUserGroup", UserGroupId="team", UserIdsToAdd=["default"], UserIdsToRemove=["mydefault"])
    world.settle()
    world.call("DeleteUser", UserId="mydefault")
    world.settle()
    assert "mydefault" not in _users(world)


def test_delete_and_describe_user_groups(world: World) -> None:
    for i in range(22):
        world.call("CreateUserGroup", UserGroupId=f"g{i:02d}", Engine="redis", UserIds=["default"])
    world.settle()
    first = world.call("DescribeUserGroups", MaxRecords=20)
    rest = world.call("DescribeUserGroups", MaxRecords=20, Marker=first["Marker"])
    assert [g["UserGroupId"] for g in first["UserGroups"] + rest["UserGroups"]] == [f"g{i:02d}" for i in range(22)]
    assert world.call("DeleteUserGroup", UserGroupId="G00")["Status"] == "deleting"
    _refused(world, "DeleteUserGroup", "InvalidUserGroupState", UserGroupId="g00")
    world.settle()
    _refused(world, "DescribeUserGroups", "UserGroupNotFound", UserGroupId="g00")
    _refused(world, "DeleteUserGroup", "UserGroupNotFound", UserGroupId="g00")
    assert _users(world)["default"]["UserGroupIds"] == [f"g{i:02d}" for i in range(1, 22)]


def test_users_and_groups_survive_a_restart(world: World) -> None:
    _user(world)
    world.call("CreateUserGroup", UserGroupId="team", Engine="redis", UserIds=["default", "alice"])
    world.settle()
    again = world.restart()
    try:
        assert _users(again)["alice"]["Authentication"] == {"Type": "password", "PasswordCount": 1}
        assert _group(again)["Status"] == "active"
    finally:
        again.service.store.close()
