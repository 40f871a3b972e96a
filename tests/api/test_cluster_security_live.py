"""TLS, AUTH tokens and RBAC users on a cluster-mode-enabled group of real nodes, used by redis-py's
RedisCluster from the configuration endpoint: the cluster's own answers (CLUSTER SLOTS, MOVED)
lead TLS clients to TLS ports, tokens rotate and users change live on every node of every
shard, and the new primary of a shard after TestFailover enforces the same."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from tests.api.conftest import LiveServer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 300}
TOKEN = "Token-of-twenty-chars"
TOKEN2 = "Second-token-12345678"
TOKEN3 = "Third-token-123456789"
PW = "a-password-of-20-chars"
CLUSTER = {"ReplicationGroupDescription": "d", "CacheNodeType": "cache.t3.micro", "NumNodeGroups": 3,
           "ReplicasPerNodeGroup": 1, "TransitEncryptionEnabled": True}


def _ca(server: LiveServer, tmp_path: Path) -> str:
    with urllib.request.urlopen(server.url + "/api/v1/ca.pem", timeout=10) as resp:
        pem = resp.read()
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    return str(path)


def _group(ec: Any) -> dict[str, Any]:
    return dict(ec.describe_replication_groups(ReplicationGroupId="cl")["ReplicationGroups"][0])


def _available(ec: Any) -> dict[str, Any]:
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
    return _group(ec)


def _settled(ec: Any, what: str) -> None:
    eventually(lambda: _group(ec)["Status"] == "available" and not _group(ec).get("PendingModifiedValues"),
               30.0, 0.05, what)


def _cluster(config: dict[str, Any], ca: str, **auth: Any) -> RedisCluster:
    return RedisCluster(host=config["Address"], port=config["Port"], ssl=True, ssl_ca_certs=ca, socket_timeout=2,
                        socket_connect_timeout=2, **auth)


def _node(member: dict[str, Any], ca: str | None, **auth: Any) -> redis.Redis:
    tls = {"ssl": True, "ssl_ca_certs": ca} if ca else {}
    return redis.Redis(host=member["ReadEndpoint"]["Address"], port=member["ReadEndpoint"]["Port"], socket_timeout=2,
                       socket_connect_timeout=2, **tls, **auth)


def _members(ec: Any) -> list[dict[str, Any]]:
    return [m for g in _group(ec)["NodeGroups"] for m in g["NodeGroupMembers"]]


def _primaries(ec: Any) -> dict[str, str]:
    return {g["NodeGroupId"]: m["CacheClusterId"] for g in _group(ec)["NodeGroups"] for m in g["NodeGroupMembers"]
            if m["CurrentRole"] == "primary"}


def _every_node_answers(ec: Any, ca: str, password: str) -> None:
    for member in _members(ec):
        with _node(member, ca, password=password) as node:
            assert node.ping(), member["CacheClusterId"]


@pytest.mark.slow
def test_tls_cluster_with_auth_tokens_from_the_configuration_endpoint(server: LiveServer, ec: Any,
                                                                      tmp_path: Path) -> None:
    ca = _ca(server, tmp_path)
    created = ec.create_replication_group(ReplicationGroupId="cl", Engine="redis", **CLUSTER,
                                          AuthToken=TOKEN)["ReplicationGroup"]
    assert created["ClusterEnabled"] is True and created["TransitEncryptionEnabled"] is True
    group = _available(ec)
    assert group["TransitEncryptionMode"] == "required" and group["AuthTokenEnabled"] is True
    config = group["ConfigurationEndpoint"]
    addresses = {(m["ReadEndpoint"]["Address"], m["ReadEndpoint"]["Port"]) for m in _members(ec)}

    def announced() -> set[tuple[str, int]]:
        with redis.Redis(host=config["Address"], port=config["Port"], ssl=True, ssl_ca_certs=ca, password=TOKEN,
                         socket_timeout=2) as node:
            slots = node.execute_command("CLUSTER SLOTS")
        return {(n[0].decode(), int(n[1])) for s in slots for n in s[2:]}

    eventually(lambda: announced() == addresses, 15.0, 0.05, lambda: f"CLUSTER SLOTS: {announced()}")
    client = _cluster(config, ca, password=TOKEN)
    for i in range(300):  # keys on every shard: MOVED leads to TLS ports
        client.set(f"k{i}", i)
    assert all(client.get(f"k{i}") == str(i).encode() for i in range(300))
    assert {client.keyslot(f"k{i}") // 5462 for i in range(300)} == {0, 1, 2}
    # TLS only: a plain connection to any node or the endpoint fails; no token or a wrong one is refused.
    for target in [*_members(ec)[:2], {"ReadEndpoint": config}]:
        with pytest.raises(redis.ConnectionError):
            _node(target, None, password=TOKEN).ping()
    with pytest.raises(redis.AuthenticationError):
        _node({"ReadEndpoint": config}, ca).get("k1")
    with pytest.raises(redis.AuthenticationError):
        _node({"ReadEndpoint": config}, ca, password=TOKEN2).ping()
    with pytest.raises(RedisClusterException, match="invalid username-password pair"):
        _cluster(config, ca, password=TOKEN2)
    # ROTATE: both tokens work on every node of every shard; SET: only the new one.
    ec.modify_replication_group(ReplicationGroupId="cl", AuthToken=TOKEN2, AuthTokenUpdateStrategy="ROTATE",
                                ApplyImmediately=True)
    _settled(ec, "the new token on every node")
    for token in (TOKEN, TOKEN2):
        _every_node_answers(ec, ca, token)
        assert _cluster(config, ca, password=token).get("k7") == b"7"
    assert client.get("k8") == b"8"  # connected clients stay connected
    ec.modify_replication_group(ReplicationGroupId="cl", AuthToken=TOKEN3, AuthTokenUpdateStrategy="SET",
                                ApplyImmediately=True)
    _settled(ec, "the token set on every node")
    _every_node_answers(ec, ca, TOKEN3)
    for member in _members(ec):
        for old in (TOKEN, TOKEN2):
            with pytest.raises(redis.AuthenticationError):
                _node(member, ca, password=old).ping()
    assert _cluster(config, ca, password=TOKEN3).get("k9") == b"9"
    # TLS cannot be turned off on a running cluster group (not built): refused, nothing changed.
    with pytest.raises(ClientError) as err:
        ec.modify_replication_group(ReplicationGroupId="cl", TransitEncryptionMode="preferred",
                                    ApplyImmediately=True)
    assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
    assert _group(ec)["TransitEncryptionMode"] == "required"


def _own_key(group: dict[str, Any], node_group_id: str, keys: list[str], slot_of: Any) -> str:
    """A key of `keys` whose slot the node group serves."""
    ranges = [tuple(int(x) for x in r.split("-")) for g in group["NodeGroups"] if g["NodeGroupId"] == node_group_id
              for r in g["Slots"].split(",")]
    return next(k for k in keys if any(a <= slot_of(k) <= b for a, b in ranges))


def _app_on_every_primary(ec: Any, ca: str, keys: list[str], slot_of: Any) -> None:
    """`on ~app:* +get` on each shard's primary, reached directly: GET of its own key, no SET, no
    other keys, nothing else."""
    group = _group(ec)
    members = {m["CacheClusterId"]: m for m in _members(ec)}
    for node_group_id, primary in _primaries(ec).items():
        key = _own_key(group, node_group_id, keys, slot_of)
        with _node(members[primary], ca, username="app", password=PW) as node:
            assert node.get(key) == b"v", (primary, key)
            with pytest.raises(redis.exceptions.NoPermissionError):
                node.set(key, "x")
            with pytest.raises(redis.exceptions.NoPermissionError):
                node.get("other:1")
            with pytest.raises(redis.exceptions.NoPermissionError):
                node.info("replication")


@pytest.mark.slow
def test_rbac_user_on_every_shard_and_after_test_failover(server: LiveServer, ec: Any, tmp_path: Path) -> None:
    # Redis only: this machine's valkey has no TLS (the process runtime refuses it; the docker
    # runtime's valkey image lacks it too, and its gate does not see that yet).
    engine = "redis"
    ca = _ca(server, tmp_path)
    ec.create_user(UserId="boss", UserName="default", Engine="redis", AccessString="on ~* +@all", Passwords=[PW])
    ec.create_user(UserId="app", UserName="app", Engine="redis", AccessString="on ~app:* +get", Passwords=[PW])
    # A cluster client asks CLUSTER SLOTS and COMMAND first: a user for one needs them (as on AWS).
    ec.create_user(UserId="reader", UserName="reader", Engine="redis",
                   AccessString="on ~app:* +get +cluster|slots +command", Passwords=[PW])
    ec.create_user_group(UserGroupId="team", Engine="redis", UserIds=["boss", "app", "reader"])
    eventually(lambda: ec.describe_user_groups(UserGroupId="team")["UserGroups"][0]["Status"] == "active",
               10.0, 0.05, "the user group active")
    ec.create_replication_group(ReplicationGroupId="cl", Engine=engine, **CLUSTER, UserGroupIds=["team"])
    group = _available(ec)
    assert group["UserGroupIds"] == ["team"]
    config = group["ConfigurationEndpoint"]
    admin = _cluster(config, ca, username="default", password=PW)
    keys = [f"app:{i}" for i in range(60)]
    for key in keys:
        admin.set(key, "v")
    assert {admin.keyslot(k) // 5462 for k in keys} == {0, 1, 2}  # on every shard
    _app_on_every_primary(ec, ca, keys, admin.keyslot)

    def reader_reads_and_cannot_write() -> None:
        client = _cluster(config, ca, username="reader", password=PW)
        assert all(client.get(k) == b"v" for k in keys)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(keys[-1], "x")

    reader_reads_and_cannot_write()
    with pytest.raises(RedisClusterException, match="invalid username-password pair"):
        _cluster(config, ca, username="reader", password="wrong-password-12345")
    # A shard's TestFailover: its new primary enforces the same users.
    before = _primaries(ec)
    ec.test_failover(ReplicationGroupId="cl", NodeGroupId="0002")
    eventually(lambda: _primaries(ec).get("0002") not in (None, before["0002"]), 30.0, 0.1, "a new primary")
    _available(ec)
    new_primary = next(m for m in _members(ec) if m["CacheClusterId"] == _primaries(ec)["0002"])
    with _node(new_primary, ca, username="default", password=PW) as node:
        assert node.info("replication")["role"] == "master"
    _app_on_every_primary(ec, ca, keys, admin.keyslot)
    reader_reads_and_cannot_write()
    # A user changed live reaches every node of every shard.
    ec.modify_user(UserId="reader", AccessString="on ~app:* +get +set +cluster|slots +command")
    eventually(lambda: ec.describe_users(UserId="reader")["Users"][0]["Status"] == "active", 30.0, 0.05,
               "the user on every node")
    writer = _cluster(config, ca, username="reader", password=PW)
    for key in keys:
        writer.set(key, "w")
    assert admin.get(keys[0]) == b"w"
