"""A global datastore over two regions of one service, with real nodes: a write in the primary region
is read in the secondary; FailoverGlobalReplicationGroup swaps the roles under a writer without losing
an acknowledged write; a write in the new primary region is read in the old one."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.conftest import LiveServer
from tests.api.writer import Writer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 200}
TOKEN = "Token-of-twenty-chars"
GROUP = {"ReplicationGroupDescription": "d", "NumCacheClusters": 2, "AutomaticFailoverEnabled": True,
         "MultiAZEnabled": True}


def _primary_endpoint(ec: Any, group_id: str) -> redis.Redis:
    ng = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0]["NodeGroups"][0]
    return redis.Redis(host=ng["PrimaryEndpoint"]["Address"], port=ng["PrimaryEndpoint"]["Port"], socket_timeout=2)


def _global(ec: Any) -> dict[str, Any]:
    return dict(ec.describe_global_replication_groups(GlobalReplicationGroupId="ldgnf-gd",
                                                      ShowMemberInfo=True)["GlobalReplicationGroups"][0])


def test_global_datastore_over_two_regions(server: LiveServer) -> None:
    us, eu = server.client(), server.client(region_name="eu-west-1")
    try:
        us.create_replication_group(ReplicationGroupId="main", Engine="redis", CacheNodeType="cache.r6g.large",
                                    **GROUP)
        us.get_waiter("replication_group_available").wait(ReplicationGroupId="main", WaiterConfig=FAST)
        main = _primary_endpoint(us, "main")
        main.set("before", "the secondary existed")
        us.create_global_replication_group(GlobalReplicationGroupIdSuffix="gd", PrimaryReplicationGroupId="main")
        eu.create_replication_group(ReplicationGroupId="copy", ReplicationGroupDescription="eu",
                                    GlobalReplicationGroupId="ldgnf-gd", NumCacheClusters=2)
        eu.get_waiter("replication_group_available").wait(ReplicationGroupId="copy", WaiterConfig=FAST)
        eventually(lambda: _global(us)["Status"] == "available", 20.0, 0.1, "the datastore available")
        copy = _primary_endpoint(eu, "copy")
        eventually(lambda: copy.get("before") == b"the secondary existed", 10.0, 0.02, "the initial sync")
        main.set("written", "in us-east-1")
        eventually(lambda: copy.get("written") == b"in us-east-1", 5.0, 0.01, "the write in the secondary")
        with pytest.raises(redis.ReadOnlyError):
            copy.set("x", 1)  # a secondary is read-only

        with Writer(_primary_endpoint(us, "main")) as writer:
            writer.writing()
            us.failover_global_replication_group(GlobalReplicationGroupId="ldgnf-gd", PrimaryRegion="eu-west-1",
                                                 PrimaryReplicationGroupId="copy")
            eventually(lambda: {m["ReplicationGroupId"]: m["Role"] for m in _global(us)["Members"]}
                       == {"main": "SECONDARY", "copy": "PRIMARY"}, 20.0, 0.1, "the roles swapped")
            eventually(lambda: _global(us)["Status"] == "available", 20.0, 0.1, "the datastore available again")
        acked = list(writer.acked)
        values = copy.mget([f"k{i}" for i in acked])
        lost = [i for i, v in zip(acked, values, strict=True) if v is None]
        assert not lost, f"{len(lost)} acknowledged writes lost, first {lost[:5]}"
        copy.set("after", "in eu-west-1")
        eventually(lambda: main.get("after") == b"in eu-west-1", 10.0, 0.02, "the write in the old primary region")
        with pytest.raises(redis.ReadOnlyError):
            main.set("y", 1)

        us.disassociate_global_replication_group(GlobalReplicationGroupId="ldgnf-gd", ReplicationGroupId="main",
                                                 ReplicationGroupRegion="us-east-1")
        eventually(lambda: _global(us)["Status"] == "primary-only", 10.0, 0.1, "primary-only")

        def writable() -> bool:
            try:
                return bool(main.set("standalone", 1))
            except redis.ReadOnlyError:
                return False

        eventually(writable, 10.0, 0.05, "the disassociated group writable again")
        eu.delete_global_replication_group(GlobalReplicationGroupId="ldgnf-gd", RetainPrimaryReplicationGroup=True)
        assert us.describe_global_replication_groups()["GlobalReplicationGroups"] == []
    finally:
        server.reset()  # every resource of every region, and their nodes


def test_global_datastore_with_tls_and_an_auth_token(server: LiveServer, tmp_path: Path) -> None:
    """The secondary takes the primary's TLS and AUTH token and replicates over TLS as the service."""
    us, eu = server.client(), server.client(region_name="eu-west-1")
    with urllib.request.urlopen(server.url + "/api/v1/ca.pem", timeout=10) as resp:
        (tmp_path / "ca.pem").write_bytes(resp.read())
    tls = {"ssl": True, "ssl_ca_certs": str(tmp_path / "ca.pem"), "password": TOKEN, "socket_timeout": 2}
    try:
        us.create_replication_group(ReplicationGroupId="main", Engine="redis", CacheNodeType="cache.r6g.large",
                                    TransitEncryptionEnabled=True, AuthToken=TOKEN, **GROUP)
        us.get_waiter("replication_group_available").wait(ReplicationGroupId="main", WaiterConfig=FAST)
        us.create_global_replication_group(GlobalReplicationGroupIdSuffix="gd", PrimaryReplicationGroupId="main")
        eu.create_replication_group(ReplicationGroupId="copy", ReplicationGroupDescription="eu",
                                    GlobalReplicationGroupId="ldgnf-gd", NumCacheClusters=2)
        eu.get_waiter("replication_group_available").wait(ReplicationGroupId="copy", WaiterConfig=FAST)
        copy_shape = eu.describe_replication_groups(ReplicationGroupId="copy")["ReplicationGroups"][0]
        assert copy_shape["TransitEncryptionEnabled"] is True and copy_shape["AuthTokenEnabled"] is True
        main_ep = us.describe_replication_groups(ReplicationGroupId="main")["ReplicationGroups"][0][
            "NodeGroups"][0]["PrimaryEndpoint"]
        copy_ep = copy_shape["NodeGroups"][0]["PrimaryEndpoint"]
        main = redis.Redis(host=main_ep["Address"], port=main_ep["Port"], **tls)
        copy = redis.Redis(host=copy_ep["Address"], port=copy_ep["Port"], **tls)
        main.set("secret", "over tls")
        eventually(lambda: copy.get("secret") == b"over tls", 10.0, 0.02, "the write in the secondary")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=copy_ep["Address"], port=copy_ep["Port"], ssl=True,
                        ssl_ca_certs=str(tmp_path / "ca.pem"), password="Wrong-token-of-20-chars").ping()
    finally:
        server.reset()


def test_a_node_type_change_rolls_both_regions(server: LiveServer) -> None:
    """Each group rolls its nodes; the secondary's rolling switchover moves its primary role between
    two replicas (of the primary region) and replication goes on."""
    us, eu = server.client(), server.client(region_name="eu-west-1")
    try:
        us.create_replication_group(ReplicationGroupId="main", Engine="redis", CacheNodeType="cache.r6g.large",
                                    **GROUP)
        us.get_waiter("replication_group_available").wait(ReplicationGroupId="main", WaiterConfig=FAST)
        us.create_global_replication_group(GlobalReplicationGroupIdSuffix="gd", PrimaryReplicationGroupId="main")
        eu.create_replication_group(ReplicationGroupId="copy", ReplicationGroupDescription="eu",
                                    GlobalReplicationGroupId="ldgnf-gd", NumCacheClusters=2)
        eventually(lambda: _global(us)["Status"] == "available", 30.0, 0.1, "the datastore available")
        us.modify_global_replication_group(GlobalReplicationGroupId="ldgnf-gd", ApplyImmediately=True,
                                           CacheNodeType="cache.r6g.xlarge")
        for client, group_id in ((us, "main"), (eu, "copy")):
            eventually(lambda c=client, g=group_id: c.describe_replication_groups(ReplicationGroupId=g)[
                "ReplicationGroups"][0]["Status"] == "available", 60.0, 0.1, f"{group_id} rolled")
        eventually(lambda: _global(us)["Status"] == "available", 30.0, 0.1, "the datastore available again")
        main, copy = _primary_endpoint(us, "main"), _primary_endpoint(eu, "copy")
        main.set("after-roll", 1)
        eventually(lambda: copy.get("after-roll") == b"1", 10.0, 0.02, "replication after the roll")
        assert copy.info("replication")["role"] == "slave"
    finally:
        server.reset()
