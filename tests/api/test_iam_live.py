"""IAM authentication on real nodes: a user with AuthenticationMode iam logs in with a token made
by botocore's signer (as AWS's client guides make it), through the IAM authenticator the runtime
puts in front of every node of the group; its ACL rules hold; a 16-minute-old token, a forged
one and one for another user are refused; the same after a TestFailover."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from controlplane.auth.iam_signer import iam_token
from tests.api.conftest import LiveServer
from tests.api.test_security_live import FAST, GROUP, PW, _available, _ca, _client, _primary_id, _refused
from tests.eventually import eventually

pytestmark = pytest.mark.usefixtures("process_only")


@pytest.fixture
def process_only(server: LiveServer) -> None:
    if server.runtime != "process":
        pytest.skip("the IAM authenticator runs beside process nodes only (docker refuses IAM users)")


def _login(endpoint: dict[str, Any], ca: str, user: str, token: str) -> redis.Redis:
    client = _client(endpoint, ca, username=user, password=token)
    assert client.ping()
    return client


def test_iam_tokens_open_the_cache_as_the_user_and_nothing_else(server: LiveServer, ec: Any, tmp_path: Path) -> None:
    ca = _ca(server, tmp_path)
    ec.create_user(UserId="robot", UserName="robot", Engine="redis", AccessString="on ~robot:* +@all",
                   AuthenticationMode={"Type": "iam"})
    ec.create_user(UserId="other", UserName="other", Engine="redis", AccessString="on ~* +@all",
                   AuthenticationMode={"Type": "iam"})
    ec.create_user(UserId="app", UserName="app", Engine="redis", AccessString="on ~* +@all", Passwords=[PW])
    ec.create_user_group(UserGroupId="team", Engine="redis", UserIds=["default", "robot", "app"])
    eventually(lambda: ec.describe_user_groups(UserGroupId="team")["UserGroups"][0]["Status"] == "active", 10.0,
               0.05, "the group active")
    ec.create_replication_group(ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
                                UserGroupIds=["team"])
    group = _available(ec)
    primary = group["NodeGroups"][0]["PrimaryEndpoint"]

    def check(endpoint: dict[str, Any]) -> None:
        robot = _login(endpoint, ca, "robot", iam_token("rg", "robot"))
        assert robot.set("robot:1", "one") and robot.get("robot:1") == b"one"
        with pytest.raises(redis.exceptions.NoPermissionError):
            robot.get("app:1")  # its ACL rules hold
        _refused(endpoint, ca, redis.AuthenticationError, username="robot",
                 password=iam_token("rg", "robot", now=time.time() - 16 * 60))  # 16 minutes old
        _refused(endpoint, ca, redis.AuthenticationError, username="robot",
                 password=iam_token("rg", "robot", secret="not-the-secret"))  # forged
        _refused(endpoint, ca, redis.AuthenticationError, username="robot",
                 password=iam_token("rg", "other"))  # another user's
        _refused(endpoint, ca, redis.AuthenticationError, username="robot",
                 password=iam_token("another-cache", "robot"))  # another cache's
        _refused(endpoint, ca, redis.AuthenticationError, username="app",
                 password=iam_token("rg", "app"))  # a password user takes no token
        _refused(endpoint, ca, redis.AuthenticationError, username="other", password=iam_token("rg", "other"))
        # Password users log in through the authenticator as before.
        assert _client(endpoint, ca, username="app", password=PW).get("robot:1") == b"one"

    check(primary)
    for member in group["NodeGroups"][0]["NodeGroupMembers"]:  # every node's own address too
        robot = _login(member["ReadEndpoint"], ca, "robot", iam_token("rg", "robot"))
        assert robot.get("robot:1") == b"one" or member["CurrentRole"] == "replica"
    old = _primary_id(ec)
    assert _client(primary, ca, username="app", password=PW).wait(1, 2000) == 1
    ec.test_failover(ReplicationGroupId="rg", NodeGroupId="0001")
    eventually(lambda: _primary_id(ec) != old, 20.0, 0.05, "a new primary")
    _available(ec)
    check(primary)
    assert "X-Amz-Signature" not in (server.data_dir / "server.log").read_text()
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
