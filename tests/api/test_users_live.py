"""RBAC users and user groups through boto3 (and the aws cli) against a live server: every
operation, AWS's error codes and HTTP statuses, tags, paging and filters; and the refusals of
AuthToken and user groups without TLS (test_security_live.py has them enforced by nodes).

(InvalidUserState and InvalidUserGroupState need a user or group caught mid-change; with no
replication group to wait for, the control loop settles them within milliseconds, so those two are
checked on the fake runtime, tests/unit/controlplane/test_users.py and test_security.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer
from tests.eventually import eventually

PW = "a-password-of-20-chars"
PW2 = "another-password-1234"
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}


def _error(call: Any, **params: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        call(**params)
    reply = err.value.response
    return reply["Error"]["Code"], reply["ResponseMetadata"]["HTTPStatusCode"], reply["Error"]["Message"]


def _user(ec: Any, uid: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    auth = {} if {"Passwords", "NoPasswordRequired", "AuthenticationMode"} & set(extra) else {"Passwords": [PW]}
    out: dict[str, Any] = ec.create_user(UserId=uid, UserName=name or uid, Engine=extra.pop("Engine", "redis"),
                                         AccessString=extra.pop("AccessString", "on ~* +@all"), **auth, **extra)
    return out


def _status(ec: Any, uid: str) -> str:
    return str(ec.describe_users(UserId=uid)["Users"][0]["Status"])


def _group_status(ec: Any, gid: str) -> str:
    return str(ec.describe_user_groups(UserGroupId=gid)["UserGroups"][0]["Status"])


def _gone(call: Any, code: str, **params: Any) -> bool:
    try:
        call(**params)
    except ClientError as err:
        return bool(err.response["Error"]["Code"] == code)
    return False


def test_users_every_operation_and_error(server: LiveServer, ec: Any) -> None:
    default = ec.describe_users(UserId="default")["Users"][0]
    assert default["Authentication"] == {"Type": "no-password"} and default["AccessString"] == "on ~* +@all"
    created = _user(ec, "App-User", "app", Passwords=[PW, PW2], AccessString="on ~app:* -@all +@read",
                    Tags=[{"Key": "team", "Value": "web"}])
    assert created["UserId"] == "app-user" and created["Status"] == "active"
    assert created["Authentication"] == {"Type": "password", "PasswordCount": 2}
    assert created["ARN"] == "arn:aws:elasticache:us-east-1:123456789012:user:app-user"
    assert PW not in str(ec.describe_users())
    assert _error(ec.create_user, UserId="app-user", UserName="x", Engine="redis", AccessString="on",
                  Passwords=[PW])[:2] == ("UserAlreadyExists", 400)
    code, status, message = _error(ec.create_user, UserId="b", UserName="b", Engine="redis", AccessString="on",
                                   Passwords=["too-short"])
    assert (code, status) == ("InvalidParameterValue", 400) and "too-short" not in message
    assert _error(ec.create_user, UserId="b", UserName="b", Engine="redis", AccessString="on ~* +nosuchcommand",
                  Passwords=[PW])[0] == "InvalidParameterValue"
    assert _error(ec.create_user, UserId="b", UserName="b", Engine="redis", AccessString="on", Passwords=[PW],
                  NoPasswordRequired=True)[:2] == ("InvalidParameterCombination", 400)
    modified = ec.modify_user(UserId="app-user", AppendAccessString="+@hash", NoPasswordRequired=True)
    assert modified["Status"] == "modifying" and modified["AccessString"] == "on ~app:* -@all +@read +@hash"
    assert modified["Authentication"] == {"Type": "no-password"}
    eventually(lambda: _status(ec, "app-user") == "active", 10.0, 0.02, "the user active again")
    assert _error(ec.modify_user, UserId="nobody", AccessString="on")[:2] == ("UserNotFound", 404)
    assert _error(ec.delete_user, UserId="default")[0] == "InvalidParameterValue"
    assert ec.delete_user(UserId="app-user")["Status"] == "deleting"
    eventually(lambda: _gone(ec.describe_users, "UserNotFound", UserId="app-user"), 10.0, 0.02, "the user gone")
    assert server.aws("describe-users", "--user-id", "default")["Users"][0]["UserName"] == "default"


def test_user_quota(ec: Any) -> None:
    for i in range(999):  # and the default user: AWS's 1000 per region
        ec.create_user(UserId=f"u{i}", UserName=f"u{i}", Engine="redis", AccessString="on", NoPasswordRequired=True)
    assert _error(ec.create_user, UserId="one-more", UserName="x", Engine="redis", AccessString="on",
                  NoPasswordRequired=True)[:2] == ("UserQuotaExceeded", 400)
    # A group holds at most 100 users.
    ids = ["default", *(f"u{i}" for i in range(100))]
    assert _error(ec.create_user_group, UserGroupId="big", Engine="redis", UserIds=ids)[:2] == (
        "UserGroupQuotaExceeded", 400)
    pages = ec.get_paginator("describe_users").paginate(PaginationConfig={"PageSize": 100})
    assert sum(len(page["Users"]) for page in pages) == 1000


def test_user_groups_every_operation_and_error(ec: Any) -> None:
    _user(ec, "app")
    _user(ec, "new-default", "default", NoPasswordRequired=True, AccessString="on ~* -@all +@read")
    out = ec.create_user_group(UserGroupId="Team", Engine="REDIS", UserIds=["default", "app"],
                               Tags=[{"Key": "k", "Value": "v"}])
    assert out["Status"] == "creating" and out["UserGroupId"] == "team" and out["ServerlessCaches"] == []
    eventually(lambda: _group_status(ec, "team") == "active", 10.0, 0.02, "the group active")
    assert ec.describe_users(UserId="app")["Users"][0]["UserGroupIds"] == ["team"]
    base = {"UserGroupId": "other", "Engine": "redis"}
    assert _error(ec.create_user_group, **base)[:2] == ("DefaultUserRequired", 400)
    assert _error(ec.create_user_group, **base, UserIds=["default", "new-default"])[:2] == ("DuplicateUserName", 400)
    assert _error(ec.create_user_group, **base, UserIds=["default", "ghost"])[:2] == ("UserNotFound", 404)
    assert _error(ec.create_user_group, UserGroupId="team", Engine="redis",
                  UserIds=["default"])[:2] == ("UserGroupAlreadyExists", 400)
    assert _error(ec.modify_user_group, UserGroupId="ghost", UserIdsToAdd=["app"])[:2] == ("UserGroupNotFound", 404)
    assert _error(ec.modify_user_group, UserGroupId="team",
                  UserIdsToRemove=["default"])[:2] == ("DefaultUserRequired", 400)
    # The documented swap of the default user.
    swapped = ec.modify_user_group(UserGroupId="team", UserIdsToAdd=["new-default"], UserIdsToRemove=["default"])
    assert swapped["Status"] == "modifying" and swapped["UserIds"] == ["default", "app"]
    assert swapped["PendingChanges"] == {"UserIdsToAdd": ["new-default"], "UserIdsToRemove": ["default"]}
    eventually(lambda: _group_status(ec, "team") == "active", 10.0, 0.02, "the modified group active")
    assert ec.describe_user_groups(UserGroupId="team")["UserGroups"][0]["UserIds"] == ["app", "new-default"]
    assert _error(ec.delete_user, UserId="new-default")[:2] == ("DefaultUserAssociatedToUserGroup", 400)
    assert ec.delete_user_group(UserGroupId="team")["Status"] == "deleting"
    eventually(lambda: _gone(ec.describe_user_groups, "UserGroupNotFound", UserGroupId="team"), 10.0, 0.02,
               "the group gone")
    ec.delete_user(UserId="new-default")  # in no group now


def test_user_group_quota_paging_and_tags(ec: Any) -> None:
    for i in range(100):
        ec.create_user_group(UserGroupId=f"g{i:03d}", Engine="redis", UserIds=["default"])
    assert _error(ec.create_user_group, UserGroupId="g100", Engine="redis",
                  UserIds=["default"])[:2] == ("UserGroupQuotaExceeded", 400)
    first = ec.describe_user_groups(MaxRecords=20)
    assert len(first["UserGroups"]) == 20 and first["Marker"]
    pages = ec.get_paginator("describe_user_groups").paginate(PaginationConfig={"PageSize": 30})
    assert [g["UserGroupId"] for page in pages for g in page["UserGroups"]] == [f"g{i:03d}" for i in range(100)]
    arn = "arn:aws:elasticache:us-east-1:123456789012:usergroup:g000"
    ec.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    ec.remove_tags_from_resource(ResourceName=arn, TagKeys=["a"])
    assert ec.list_tags_for_resource(ResourceName=arn)["TagList"] == [{"Key": "b", "Value": "2"}]
    user_arn = _user(ec, "tagged", Tags=[{"Key": "x", "Value": "y"}])["ARN"]
    ec.add_tags_to_resource(ResourceName=user_arn, Tags=[{"Key": "z", "Value": "w"}])
    assert ec.list_tags_for_resource(ResourceName=user_arn)["TagList"] == [{"Key": "x", "Value": "y"},
                                                                           {"Key": "z", "Value": "w"}]
    assert _error(ec.list_tags_for_resource,
                  ResourceName="arn:aws:elasticache:us-east-1:123456789012:user:nobody")[:2] == ("UserNotFound", 404)
    assert _error(ec.list_tags_for_resource, ResourceName="arn:aws:elasticache:us-east-1:123456789012:usergroup:no")[
        :2] == ("UserGroupNotFound", 404)


def test_describe_users_filters_and_paging(ec: Any) -> None:
    for i in range(30):
        _user(ec, f"user-{i:02d}", Engine="valkey" if i % 3 == 0 else "redis")
    picked = ec.describe_users(Filters=[{"Name": "user-id", "Values": ["user-01", "USER-02", "nobody"]}])["Users"]
    assert [u["UserId"] for u in picked] == ["user-01", "user-02"]
    assert {u["UserId"] for u in ec.describe_users(Engine="valkey")["Users"]} == {f"user-{i:02d}" for i in
                                                                                   range(0, 30, 3)}
    first = ec.describe_users(MaxRecords=20)
    second = ec.describe_users(MaxRecords=20, Marker=first["Marker"])
    assert len(first["Users"]) == 20 and len(second["Users"]) == 11 and "Marker" not in second
    assert _error(ec.describe_users, MaxRecords=5)[0] == "InvalidParameterValue"
    assert _error(ec.describe_users, Filters=[{"Name": "colour", "Values": ["x"]}])[0] == "InvalidParameterCombination"
    assert _error(ec.describe_users, UserId="nobody")[:2] == ("UserNotFound", 404)


def test_auth_token_and_user_group_refusals(ec: Any) -> None:
    ec.create_user_group(UserGroupId="team", Engine="redis", UserIds=["default"])
    eventually(lambda: _group_status(ec, "team") == "active", 10.0, 0.02, "the group active")
    cases = [
        ({"AuthToken": "Token-of-twenty-chars"}, "InvalidParameterCombination", "requires TransitEncryptionEnabled"),
        ({"TransitEncryptionEnabled": True, "AuthToken": "short"}, "InvalidParameterValue", "16-128"),
        ({"TransitEncryptionEnabled": True, "UserGroupIds": ["ghost"]}, "UserGroupNotFound", "ghost"),
        ({"UserGroupIds": ["team"]}, "InvalidParameterCombination", "require TransitEncryptionEnabled"),
    ]
    for params, code, needle in cases:
        got, _, message = _error(ec.create_replication_group, ReplicationGroupId="rg", **GROUP, **params)
        assert (got, needle in message) == (code, True), (params, got, message)
        assert "Token-of-twenty-chars" not in message
    assert ec.describe_replication_groups()["ReplicationGroups"] == []
    assert _error(ec.create_cache_cluster, CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
                  AuthToken="Token-of-twenty-chars")[0] == "InvalidParameterCombination"
