"""TLS, AUTH tokens and RBAC users enforced by real redis nodes, through boto3 and redis-py: the CA
download, TLS required and preferred, tokens rotated and set live, users changed live, and all of it
kept across an automatic failover, a test failover and a snapshot."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError
from pymemcache.client.base import Client as MemcacheClient
from pymemcache.exceptions import MemcacheError

from tests.api.conftest import LiveServer
from tests.api.writer import Writer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 300}
TOKEN = "Token-of-twenty-chars"
TOKEN2 = "Second-token-12345678"
TOKEN3 = "Third-token-123456789"
PW = "a-password-of-20-chars"
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
         "NumCacheClusters": 2, "AutomaticFailoverEnabled": True}


def _ca(server: LiveServer, tmp_path: Path) -> str:
    with urllib.request.urlopen(server.url + "/api/v1/ca.pem", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/x-pem-file")
        pem = resp.read()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    return str(path)


def _group(ec: Any, gid: str = "rg") -> dict[str, Any]:
    return dict(ec.describe_replication_groups(ReplicationGroupId=gid)["ReplicationGroups"][0])


def _available(ec: Any, gid: str = "rg") -> dict[str, Any]:
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId=gid, WaiterConfig=FAST)
    return _group(ec, gid)


def _client(endpoint: dict[str, Any], ca: str | None, **auth: Any) -> redis.Redis:
    tls = {"ssl": True, "ssl_ca_certs": ca} if ca else {}
    return redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=2, socket_connect_timeout=2,
                       **tls, **auth)


def _refused(endpoint: dict[str, Any], ca: str | None, error: type[Exception], **auth: Any) -> None:
    with pytest.raises(error):
        _client(endpoint, ca, **auth).ping()


def _kill(server: LiveServer, cluster_id: str) -> None:
    body = json.dumps({"cluster_id": cluster_id, "node_id": "0001", "action": "kill"}).encode()
    req = urllib.request.Request(server.url + "/api/v1/faults/node", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()


def _primary_id(ec: Any) -> str:
    return next(m["CacheClusterId"] for m in _group(ec)["NodeGroups"][0]["NodeGroupMembers"]
                if m["CurrentRole"] == "primary")


def test_tls_required_auth_tokens_rotated_and_kept_across_failover(server: LiveServer, ec: Any,
                                                                    tmp_path: Path) -> None:
    ca = _ca(server, tmp_path)
    ec.create_replication_group(ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True, AuthToken=TOKEN)
    group = _available(ec)
    assert group["TransitEncryptionEnabled"] is True and group["TransitEncryptionMode"] == "required"
    assert group["AuthTokenEnabled"] is True
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    assert _client(endpoint, ca, password=TOKEN).set("k", "v")
    _refused(endpoint, None, redis.ConnectionError, password=TOKEN)  # plain text: TLS only
    _refused(endpoint, ca, redis.AuthenticationError)  # no token (NOAUTH)
    _refused(endpoint, ca, redis.AuthenticationError, password=TOKEN2)  # a wrong token
    # ROTATE: both tokens work, and a connected client stays connected.
    kept = _client(endpoint, ca, password=TOKEN)
    kept.ping()
    out = ec.modify_replication_group(ReplicationGroupId="rg", AuthToken=TOKEN2, AuthTokenUpdateStrategy="ROTATE",
                                      ApplyImmediately=True)["ReplicationGroup"]
    assert out["PendingModifiedValues"].get("AuthTokenStatus") in ("ROTATING", None)
    eventually(lambda: "AuthTokenStatus" not in _group(ec).get("PendingModifiedValues", {}), 20.0, 0.05,
               "the new token on every node")
    assert _client(endpoint, ca, password=TOKEN2).get("k") == b"v"
    assert _client(endpoint, ca, password=TOKEN).get("k") == b"v"
    assert kept.get("k") == b"v"
    reader = group["NodeGroups"][0]["ReaderEndpoint"]
    assert _client(reader, ca, password=TOKEN2).get("k") == b"v"  # the replica has it too
    # SET: only the new one.
    ec.modify_replication_group(ReplicationGroupId="rg", AuthToken=TOKEN3, AuthTokenUpdateStrategy="SET",
                                ApplyImmediately=True)
    eventually(lambda: "AuthTokenStatus" not in _group(ec).get("PendingModifiedValues", {}), 20.0, 0.05,
               "the token set on every node")
    _refused(endpoint, ca, redis.AuthenticationError, password=TOKEN2)
    _refused(endpoint, ca, redis.AuthenticationError, password=TOKEN)
    assert _client(endpoint, ca, password=TOKEN3).get("k") == b"v"
    assert kept.get("k") == b"v"  # connected clients stay connected (AWS: they are not dropped)
    # kill -9 of the primary: an automatic failover, and the replacement enforces the same.
    assert _client(endpoint, ca, password=TOKEN3).wait(1, 2000) == 1
    old = _primary_id(ec)
    _kill(server, old)
    eventually(lambda: _primary_id(ec) != old, 20.0, 0.05, "a new primary")
    group = _available(ec)
    client = _client(endpoint, ca, password=TOKEN3)
    assert client.info("replication")["role"] == "master" and client.get("k") == b"v"
    members = {m["CacheClusterId"]: m for m in group["NodeGroups"][0]["NodeGroupMembers"]}
    replaced = members[old]["ReadEndpoint"]
    eventually(lambda: _client(replaced, ca, password=TOKEN3).info("replication")["master_link_status"] == "up",
               20.0, 0.1, "the replaced node replicating")
    _refused(replaced, ca, redis.AuthenticationError, password=TOKEN)
    _refused(replaced, None, redis.ConnectionError, password=TOKEN3)
    # A snapshot of a secured group.
    ec.create_snapshot(ReplicationGroupId="rg", SnapshotName="secured")
    eventually(lambda: ec.describe_snapshots(SnapshotName="secured")["Snapshots"][0]["SnapshotStatus"] == "available",
               30.0, 0.1, "the snapshot of the secured group")
    log = (server.data_dir / "server.log").read_text()
    assert TOKEN not in log and TOKEN2 not in log and TOKEN3 not in log
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)


def _user_status(ec: Any, uid: str) -> str:
    return str(ec.describe_users(UserId=uid)["Users"][0]["Status"])


def test_rbac_users_enforced_changed_live_and_kept_across_failover(server: LiveServer, ec: Any,
                                                                   tmp_path: Path) -> None:
    ca = _ca(server, tmp_path)
    ec.create_user(UserId="app", UserName="app", Engine="redis", AccessString="on ~app:* +get", Passwords=[PW])
    ec.create_user_group(UserGroupId="team", Engine="redis", UserIds=["default", "app"])
    eventually(lambda: ec.describe_user_groups(UserGroupId="team")["UserGroups"][0]["Status"] == "active", 10.0,
               0.05, "the group active")
    # Mode preferred's forwarder runs beside process nodes only (docker: refused, so required).
    mode = "preferred" if server.runtime == "process" else "required"
    ec.create_replication_group(ReplicationGroupId="rg", **GROUP, TransitEncryptionEnabled=True,
                                TransitEncryptionMode=mode, UserGroupIds=["team"])
    group = _available(ec)
    assert group["TransitEncryptionMode"] == mode and group["UserGroupIds"] == ["team"]
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    _client(endpoint, ca).set("app:1", "one")  # the built-in default user: everything, no password
    if mode == "preferred":
        assert _client(endpoint, None).get("app:1") == b"one"  # preferred: plain text too
    app = _client(endpoint, ca, username="app", password=PW)
    assert app.get("app:1") == b"one"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.set("app:1", "two")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("other:1")
    _refused(endpoint, ca, redis.AuthenticationError, username="app", password="wrong-password-123456")
    # ModifyUser: live, on the same connection; the user reads active only once the nodes have it.
    out = ec.modify_user(UserId="app", AccessString="on ~app:* +get +set")
    assert out["Status"] == "modifying"
    eventually(lambda: _user_status(ec, "app") == "active", 20.0, 0.05, "the user active")
    assert app.set("app:1", "two")
    # TestFailover: the new primary enforces the same users.
    old = _primary_id(ec)
    assert _client(endpoint, ca).wait(1, 2000) == 1
    ec.test_failover(ReplicationGroupId="rg", NodeGroupId="0001")
    eventually(lambda: _primary_id(ec) != old, 20.0, 0.05, "a new primary")
    _available(ec)
    app = _client(endpoint, ca, username="app", password=PW)
    assert app.get("app:1") == b"two"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("other:1")
    assert app.set("app:2", "x")
    # preferred -> required: a rolling restart; plain text refused afterwards.
    if mode == "required":
        with pytest.raises(ClientError, match="TransitEncryptionMode preferred"):
            ec.modify_replication_group(ReplicationGroupId="rg", TransitEncryptionMode="preferred")
    ec.modify_replication_group(ReplicationGroupId="rg", TransitEncryptionMode="required", ApplyImmediately=True)
    eventually(lambda: _group(ec).get("TransitEncryptionMode") == "required" and _group(ec)["Status"] == "available",
               60.0, 0.1, "mode required on every node")
    _refused(endpoint, None, redis.ConnectionError)
    assert _client(endpoint, ca, username="app", password=PW).get("app:2") == b"x"
    assert PW not in (server.data_dir / "server.log").read_text()
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)


def _node_endpoints(ec: Any) -> list[dict[str, Any]]:
    return [m["ReadEndpoint"] for m in _group(ec)["NodeGroups"][0]["NodeGroupMembers"]]


def _every_node_has(ec: Any, ca: str | None, acked: list[int]) -> None:
    """Each node (the replicas once caught up) holds every acknowledged write."""
    for endpoint in _node_endpoints(ec):
        client = _client(endpoint, ca)

        def caught_up(client: redis.Redis = client) -> bool:
            values = client.mget([f"k{n}" for n in acked])
            return values == [str(n).encode() for n in acked]

        eventually(caught_up, 20.0, 0.1, f"every acknowledged write on {endpoint['Address']}")


def _step(ec: Any, writer: Writer, what: str, **params: Any) -> dict[str, Any]:
    out = ec.modify_replication_group(ReplicationGroupId="rg", ApplyImmediately=True, **params)["ReplicationGroup"]
    assert out["Status"] == "modifying"
    eventually(lambda: _group(ec)["Status"] == "available", 90.0, 0.1, what)
    writer.writing(len(writer.acked) + 10)
    return _group(ec)


def test_tls_turned_on_and_off_on_a_running_group_while_writing(server: LiveServer, ec: Any, tmp_path: Path) -> None:
    if server.runtime != "process":
        pytest.skip("mode preferred (the first step) has its forwarder beside process nodes only")
    ca = _ca(server, tmp_path)
    ec.create_replication_group(ReplicationGroupId="rg", **{**GROUP, "NumCacheClusters": 3})
    group = _available(ec)
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    with Writer(_client(endpoint, None)) as writer:
        writer.writing()
        # Step 1: TLS on, mode preferred: plain-text clients keep working, TLS ones connect too.
        group = _step(ec, writer, "TLS preferred on every node", TransitEncryptionEnabled=True,
                      TransitEncryptionMode="preferred")
        assert group["TransitEncryptionEnabled"] is True and group["TransitEncryptionMode"] == "preferred"
        assert _client(endpoint, ca).ping() and _client(endpoint, None).ping()
        for node in _node_endpoints(ec):  # once every node has TLS, replication uses it too
            client = _client(node, ca)
            assert client.config_get("tls-replication")["tls-replication"] == "yes"
            if client.info("replication")["role"] == "slave":
                eventually(lambda c=client: c.info("replication")["master_link_status"] == "up", 20.0, 0.1,
                           "the replica's link over TLS")
        writer.client = _client(endpoint, ca)
        # Step 2: mode required: plain text refused.
        group = _step(ec, writer, "TLS required on every node", TransitEncryptionMode="required")
        assert group["TransitEncryptionMode"] == "required"
        _refused(endpoint, None, redis.ConnectionError)
        _every_node_has(ec, ca, list(writer.acked))
        # And back: preferred, then off.
        _step(ec, writer, "TLS preferred again", TransitEncryptionMode="preferred")
        writer.client = _client(endpoint, None)
        writer.writing(len(writer.acked) + 10)
        group = _step(ec, writer, "TLS off on every node", TransitEncryptionEnabled=False)
        assert group["TransitEncryptionEnabled"] is False and "TransitEncryptionMode" not in group
        _refused(endpoint, ca, redis.RedisError)  # a TLS handshake with a plain-text node: no answer
    _every_node_has(ec, None, writer.acked)
    assert writer.longest_gap < 5.0, writer.longest_gap  # served throughout (switchovers pause writes briefly)
    messages = [e["Message"] for e in ec.describe_events(SourceType="replication-group", SourceIdentifier="rg",
                                                          Duration=60)["Events"]]
    assert "In-transit encryption of replication group rg is now mode preferred on all its nodes" in messages
    assert "In-transit encryption of replication group rg is now disabled on all its nodes" in messages
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)


def test_memcached_with_tls_and_its_configuration_endpoint(server: LiveServer, ec: Any, tmp_path: Path) -> None:
    """AWS: memcached 1.6.12+ with in-transit encryption; the configuration endpoint speaks TLS too."""
    ca = ssl.create_default_context(cafile=_ca(server, tmp_path))
    ec.create_cache_cluster(CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro", NumCacheNodes=2,
                            TransitEncryptionEnabled=True)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="mc", WaiterConfig=FAST)
    cluster = ec.describe_cache_clusters(CacheClusterId="mc", ShowCacheNodeInfo=True)["CacheClusters"][0]
    assert cluster["TransitEncryptionEnabled"] is True
    config = cluster["ConfigurationEndpoint"]
    client = MemcacheClient((config["Address"], config["Port"]), tls_context=ca, connect_timeout=5, timeout=5)
    try:
        answer = client.raw_command(b"config get cluster", b"END\r\n").decode()
        listed = answer.split("\n")[2].split()
        nodes = [(n["Endpoint"]["Address"], n["Endpoint"]["Port"]) for n in cluster["CacheNodes"]]
        assert sorted((e.split("|")[1], int(e.split("|")[2])) for e in listed) == sorted(nodes)
        assert client.set("k", b"v", noreply=False) and client.get("k") == b"v"  # passed on to a node, over TLS
    finally:
        client.close()
    with pytest.raises((OSError, MemcacheError)):  # plain text: no answer from a TLS-only endpoint
        plain = MemcacheClient((config["Address"], config["Port"]), connect_timeout=2, timeout=2)
        plain.raw_command(b"config get cluster", b"END\r\n")
    ec.delete_cache_cluster(CacheClusterId="mc")
    ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="mc", WaiterConfig=FAST)
