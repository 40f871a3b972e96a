"""Online migration with real nodes: a self-managed redis-server (started here) migrated into a
replication group while a client writes to it, then cut over without losing an acknowledged write."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.conftest import free_port
from tests.api.writer import Writer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 150}


@contextlib.contextmanager
def self_managed_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A bare redis-server on 127.0.0.1, as a user runs one: stopped at the end."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is installed by deploy/bootstrap.sh"
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)
    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        eventually(answers, 10.0, 0.02, "the self-managed redis answering")
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _group(ec: Any) -> dict[str, Any]:
    return dict(ec.describe_replication_groups(ReplicationGroupId="rg")["ReplicationGroups"][0])


def _events(ec: Any) -> list[str]:
    return [e["Message"] for e in ec.describe_events(SourceType="replication-group",
                                                     SourceIdentifier="rg")["Events"]]


def test_migrate_a_self_managed_redis_under_a_writer(ec: Any, tmp_path: Path) -> None:
    ec.create_replication_group(ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True,
                                MultiAZEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    endpoint = _group(ec)["NodeGroups"][0]["PrimaryEndpoint"]
    target = redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=2)
    target.set("old", "target data")  # replaced by the source's data
    with self_managed_redis(tmp_path) as source:
        source.mset({f"before{i}": i for i in range(1000)})
        port = source.connection_pool.connection_kwargs["port"]
        where = [{"Address": "127.0.0.1", "Port": port}]
        ec.test_migration(ReplicationGroupId="rg", CustomerNodeEndpointList=where)
        eventually(lambda: "Test Migration successful for rg" in _events(ec), 10.0, 0.05, "the test's event")
        with Writer(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)) as writer:
            writer.writing()
            started = ec.start_migration(ReplicationGroupId="rg", CustomerNodeEndpointList=where)
            assert started["ReplicationGroup"]["Status"] == "migrating"
            eventually(lambda: target.get("before999") == b"999", 20.0, 0.05, "the source's data on the target")
            assert target.get("old") is None
            with pytest.raises(redis.ReadOnlyError):  # a replica of the source until the cut-over
                target.set("x", 1)
            assert _group(ec)["Status"] == "migrating"
            writer.writing(len(writer.acked) + 200)  # the source keeps taking writes meanwhile
        acked = list(writer.acked)  # the application stopped writing to the source: cut over
        ec.complete_migration(ReplicationGroupId="rg")
        eventually(lambda: _group(ec)["Status"] == "available", 20.0, 0.05, "the group available again")
        assert "Complete Migration successful for rg" in _events(ec)
        values = target.mget([f"k{i}" for i in acked])
        lost = [i for i, v in zip(acked, values, strict=True) if v is None]
        assert not lost, f"{len(lost)} acknowledged writes lost, first {lost[:5]}"
        target.set("after", "cut-over")  # a primary again
        assert source.get("after") is None  # and no longer tied to the source
        member = next(m for m in _group(ec)["NodeGroups"][0]["NodeGroupMembers"] if m["CurrentRole"] == "replica")
        replica = redis.Redis(host=member["ReadEndpoint"]["Address"], port=member["ReadEndpoint"]["Port"])
        eventually(lambda: replica.get("after") == b"cut-over", 10.0, 0.02, "the replica following the new primary")
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)


def test_a_source_with_auth_is_refused_by_an_event(ec: Any, tmp_path: Path) -> None:
    ec.create_replication_group(ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True,
                                MultiAZEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
    with self_managed_redis(tmp_path) as source:
        source.config_set("requirepass", "a-password-here")
        port = source.connection_pool.connection_kwargs["port"]
        ec.start_migration(ReplicationGroupId="rg", CustomerNodeEndpointList=[{"Address": "127.0.0.1", "Port": port}])
        eventually(lambda: any(e.startswith("Migration failed for rg: ") for e in _events(ec)), 10.0, 0.05,
                   "the failure event")
        assert _group(ec)["Status"] == "available"
    ec.delete_replication_group(ReplicationGroupId="rg")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="rg", WaiterConfig=FAST)
