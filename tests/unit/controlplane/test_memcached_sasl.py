"""Memcached SASL from the API (controlplane/sasl.py): a cluster tagged `elasticache-local:sasl=true`
gets the users of the service's credentials file on every node (new ones, replacements), their
passwords follow the file live, bad input gets AWS's errors, and no password is shown anywhere."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controlplane.sasl import SASL_TAG, SaslFileError, SaslUsers, read_users
from controlplane.state.records import CacheCluster, ResourceKey
from engine import AclUser
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World, whole_app

PW_A = "alice-Secret-ONE-1"
PW_B = "bob-Secret-TWO-22"
PW_A2 = "alice-Secret-NEW-3"
SECRETS = (PW_A, PW_B, PW_A2)
MC = {"Engine": "memcached", "CacheNodeType": "cache.t3.micro"}
SASL = [{"Key": SASL_TAG, "Value": "true"}]
ARN = "arn:aws:elasticache:us-east-1:123456789012:cluster:mc"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "sasl-users", f"# the memcached users\nalice:{PW_A}\n\nbob:{PW_B}\n")


@pytest.fixture
def world(tmp_path: Path, users_file: Path) -> Iterator[World]:
    w = World(tmp_path / "data", memcached_sasl_file=users_file)
    yield w
    w.service.store.close()


def _refused(world: World, operation: str, code: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    assert not any(s in err.value.message for s in SECRETS)
    return err.value.message


def _node(node_id: str, cluster: str = "mc") -> str:
    return f"123456789012-us-east-1-{cluster}-{node_id}"


def _users(world: World, node_id: str) -> dict[str, tuple[str, ...]]:
    security = world.runtime.config_of(_node(node_id)).security
    assert security is not None and security.tls is None
    return {u.name: u.rules for u in security.users}


def _resync(world: World) -> None:
    """What the controller's periodic resync does: every cluster is looked at again."""
    world.service.controller.enqueue(ResourceKey(CacheCluster.KIND, "123456789012", "us-east-1", "mc"))
    world.settle()


def _status(world: World) -> str:
    return str(world.call("DescribeCacheClusters", CacheClusterId="mc")["CacheClusters"][0]["CacheClusterStatus"])


# ---- the credentials file ------------------------------------------------------------------------


def test_the_file_is_user_password_lines_readable_by_its_owner_only(tmp_path: Path, users_file: Path) -> None:
    assert read_users(users_file) == {"alice": PW_A, "bob": PW_B}
    for text, mode, needle in [
        (f"alice:{PW_A}\n", 0o644, "chmod 600"),
        (f"alice {PW_A}\n", 0o600, "line 1: expected user:password"),
        (f"# c\nalice:{PW_A}\nalice:{PW_B}\n", 0o600, "line 3: user alice is listed twice"),
        (f"elasticache-local:{PW_A}\n", 0o600, "the service's own user"),
        (f"-x:{PW_A}\n", 0o600, "line 1: a user name"),
        (f"alice:{PW_A} {PW_B}\n", 0o600, "has whitespace"),
        ("# nobody\n\n", 0o600, "has no user:password line"),
    ]:
        with pytest.raises(SaslFileError) as err:
            read_users(_write(tmp_path / "f", text, mode))
        assert needle in str(err.value) and not any(s in str(err.value) for s in SECRETS), (text, err.value)
    with pytest.raises(SaslFileError, match="cannot open"):
        read_users(tmp_path / "absent")
    cached = SaslUsers(users_file)
    assert cached.users()["alice"] == PW_A and PW_A not in repr(cached)
    os.chmod(users_file, 0o640)  # a chmod alone is seen too
    with pytest.raises(SaslFileError, match="chmod 600"):
        cached.users()


# ---- asking for it ------------------------------------------------------------------------------


def test_a_tagged_memcached_cluster_runs_every_node_with_the_files_users(world: World) -> None:
    out = world.call("CreateCacheCluster", CacheClusterId="mc", **MC, NumCacheNodes=2, Tags=SASL)["CacheCluster"]
    assert out["CacheClusterStatus"] == "creating"
    world.settle()
    assert _status(world) == "available"
    for node_id in ("0001", "0002"):
        assert _users(world, node_id) == {"alice": ("on", f">{PW_A}"), "bob": ("on", f">{PW_B}")}
        security = world.runtime.config_of(_node(node_id)).security
        assert security is not None and security.admin.name == "elasticache-local"
    rec = world.service.store.get(ResourceKey(CacheCluster.KIND, "123456789012", "us-east-1", "mc"), CacheCluster)
    assert rec is not None and rec.spec.security.sasl and rec.status.security_applied is not None
    assert rec.status.security_applied.sasl
    assert not any(s in rec.model_dump_json() for s in SECRETS)  # the store has no password
    # A node added by ModifyCacheCluster, and a node that crashed and came back, get them too.
    world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=3, ApplyImmediately=True)
    world.settle()
    assert _users(world, "0003")["alice"] == ("on", f">{PW_A}")
    world.runtime.crash(_node("0001"))
    world.settle_until(lambda: _status(world) == "available"
                       and world.runtime.calls_of("start").count(_node("0001")) > 1)
    assert _users(world, "0001")["bob"] == ("on", f">{PW_B}")
    assert world.runtime.applied_users == []  # every node started with them: nothing to change
    # With TLS too: the node serves TLS, and its users are the file's.
    world.call("CreateCacheCluster", CacheClusterId="tls", **MC, TransitEncryptionEnabled=True, Tags=SASL)
    world.settle()
    security = world.runtime.config_of(_node("0001", "tls")).security
    assert security is not None and security.tls is not None and [u.name for u in security.users] == ["alice", "bob"]


def test_the_users_follow_the_file_live(world: World, users_file: Path) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", **MC, NumCacheNodes=2, Tags=SASL)
    world.settle()
    _write(users_file, f"alice:{PW_A2}\n")  # a new password; bob is gone
    _resync(world)
    wanted = (AclUser("alice", ("on", f">{PW_A2}")),)
    assert sorted(world.runtime.applied_users) == [(_node("0001"), wanted), (_node("0002"), wanted)]
    assert _users(world, "0002") == {"alice": ("on", f">{PW_A2}")}
    assert world.events("mc").count("Memcached SASL users of cache cluster mc updated on its nodes") == 1
    _resync(world)
    assert len(world.runtime.applied_users) == 2  # unchanged file: nothing applied again
    # A file that became unusable changes nothing, and says so once.
    os.chmod(users_file, 0o644)
    _resync(world)
    _resync(world)
    assert len(world.runtime.applied_users) == 2 and _users(world, "0001") == {"alice": ("on", f">{PW_A2}")}
    said = [e for e in world.events("mc") if e.startswith("Memcached SASL users not updated")]
    assert len(said) == 1 and "chmod 600" in said[0], said
    assert _status(world) == "available"


def test_after_a_restart_the_nodes_are_given_the_files_users_once_quietly(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", **MC, Tags=SASL)
    world.settle()
    again = world.restart()
    try:
        _resync(again)
        assert [name for name, _ in again.runtime.applied_users] == [_node("0001")]
        _resync(again)
        assert len(again.runtime.applied_users) == 1
        assert not any("updated on its nodes" in e for e in again.events("mc"))
    finally:
        again.service.store.close()


# ---- refusals ---------------------------------------------------------------------------------


def test_bad_requests_get_aws_errors_and_change_nothing(world: World, users_file: Path, tmp_path: Path) -> None:
    assert "Valid values: true, false" in _refused(world, "CreateCacheCluster", "InvalidParameterValue",
                                                   CacheClusterId="mc", **MC, Tags=[{"Key": SASL_TAG, "Value": "yes"}])
    assert "Memcached clusters only" in _refused(world, "CreateCacheCluster", "InvalidParameterCombination",
                                                 CacheClusterId="r", Engine="redis", CacheNodeType="cache.t3.micro",
                                                 Tags=SASL)
    assert "Memcached clusters only" in _refused(
        world, "CreateReplicationGroup", "InvalidParameterCombination", ReplicationGroupId="rg",
        ReplicationGroupDescription="d", Engine="redis", CacheNodeType="cache.t3.micro", Tags=SASL)
    os.chmod(users_file, 0o644)
    assert "chmod 600" in _refused(world, "CreateCacheCluster", "InvalidParameterValue", CacheClusterId="mc", **MC,
                                   Tags=SASL)
    os.chmod(users_file, 0o600)
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    # The tag says what the cluster was created with: SASL is not turned on or off later.
    world.call("CreateCacheCluster", CacheClusterId="plain", **MC)
    world.call("CreateCacheCluster", CacheClusterId="mc", **MC, Tags=SASL)
    world.settle()
    plain = ARN.replace(":mc", ":plain")
    assert "turned on" in _refused(world, "AddTagsToResource", "InvalidParameterCombination", ResourceName=plain,
                                   Tags=SASL)
    assert "turned off" in _refused(world, "RemoveTagsFromResource", "InvalidParameterCombination", ResourceName=ARN,
                                    TagKeys=[SASL_TAG])
    assert "turned off" in _refused(world, "AddTagsToResource", "InvalidParameterCombination", ResourceName=ARN,
                                    Tags=[{"Key": SASL_TAG, "Value": "false"}])
    assert world.call("AddTagsToResource", ResourceName=ARN, Tags=[{"Key": "team", "Value": "web"},
                                                                   {"Key": SASL_TAG, "Value": "TRUE"}])
    assert world.call("AddTagsToResource", ResourceName=plain, Tags=[{"Key": SASL_TAG, "Value": "false"}])
    assert {t["Key"]: t["Value"] for t in world.call("ListTagsForResource", ResourceName=ARN)["TagList"]} == {
        SASL_TAG: "TRUE", "team": "web"}
    assert world.runtime.config_of(_node("0001", "plain")).security is None


def test_without_a_credentials_file_no_cluster_can_ask(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        message = _refused(world, "CreateCacheCluster", "InvalidParameterCombination", CacheClusterId="mc", **MC,
                           Tags=SASL)
        assert "ELASTICACHE_LOCAL_MEMCACHED_SASL_FILE" in message
        world.call("CreateCacheCluster", CacheClusterId="mc", **MC, Tags=[{"Key": SASL_TAG, "Value": "false"}])
    finally:
        world.service.store.close()


def test_no_answer_page_event_or_log_line_shows_a_password(world: World, users_file: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.call("CreateCacheCluster", CacheClusterId="mc", **MC, NumCacheNodes=2, Tags=SASL)
    world.settle()
    _write(users_file, f"alice:{PW_A2}\n")
    _resync(world)
    os.chmod(users_file, 0o644)
    _resync(world)
    seen = [repr(world.call("DescribeCacheClusters", ShowCacheNodeInfo=True)),
            repr(world.call("DescribeEvents", Duration=60)), repr(world.call("ListTagsForResource", ResourceName=ARN))]
    with TestClient(whole_app(world), base_url="http://127.0.0.1:8379") as client:
        for path in ("/api/v1/cache-clusters", "/api/v1/cache-clusters/mc", "/api/v1/events", "/api/v1/nodes",
                     "/dashboard", "/dashboard/cache-clusters/mc", "/dashboard/cache-clusters/mc/live"):
            reply = client.get(path)
            assert reply.status_code == 200, (path, reply.text[:300])
            seen.append(reply.text)
    seen.append(caplog.text)
    assert [s for s in SECRETS if any(s in text for text in seen)] == []
