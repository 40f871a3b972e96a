"""Replication group endpoints that cannot float (the 127.0.0.1 ports addressing, engines before
7.0): HAProxy stands in, re-pointed by the reconciler through its runtime API. Live, with real
nodes, a writer through the primary endpoint and kill -9 of the primary."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.api.conftest import LiveServer, running_server
from tests.api.writer import kill_primary_under_writer

FAST = {"Delay": 0.1, "MaxAttempts": 150}


@pytest.fixture(scope="module")
def ports_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server("process", tmp_path_factory.mktemp("elasticache-local-ports"),
                        ELASTICACHE_LOCAL_ADDRESSING="ports", ELASTICACHE_LOCAL_PORT_RANGE="32100-32199",
                        ELASTICACHE_LOCAL_L4_PROXY="haproxy") as live:
        yield live


def _haproxy_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "haproxy":
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def _listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (from /proc/net/tcp and each process's fds)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            inodes.add(fields[9])
    for pid in _haproxy_pids():
        try:
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return pid
        except OSError:
            continue
    return None


def test_haproxy_endpoints_follow_a_failover(ports_server: LiveServer) -> None:
    health = json.loads(urllib.request.urlopen(ports_server.url + "/api/v1/health", timeout=5).read())
    assert health["addressing"] == "ports" and health["l4_proxy"] == "haproxy"
    ec = ports_server.client()
    ec.create_replication_group(ReplicationGroupId="px", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=3, AutomaticFailoverEnabled=True)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="px", WaiterConfig=FAST)
    ng = ec.describe_replication_groups(ReplicationGroupId="px")["ReplicationGroups"][0]["NodeGroups"][0]
    primary_ep, reader_ep = ng["PrimaryEndpoint"], ng["ReaderEndpoint"]
    assert primary_ep["Address"] == reader_ep["Address"] == "127.0.0.1"
    # Both endpoints are HAProxy listeners, not the nodes themselves.
    assert _listener_pid(primary_ep["Port"]) is not None
    assert _listener_pid(reader_ep["Port"]) is not None
    client = redis.Redis(host=primary_ep["Address"], port=primary_ep["Port"], socket_timeout=1,
                         socket_connect_timeout=1)
    assert client.info("replication")["role"] == "master"
    reader = redis.Redis(host=reader_ep["Address"], port=reader_ep["Port"], socket_timeout=1)
    assert reader.info("replication")["role"] == "slave"
    old_pid = kill_primary_under_writer(client)
    # The same endpoint address now reaches the promoted replica.
    assert client.info("server")["process_id"] != old_pid
    assert client.info("replication")["role"] == "master"
    roles = {m["CacheClusterId"]: m["CurrentRole"] for m in ec.describe_replication_groups(
        ReplicationGroupId="px")["ReplicationGroups"][0]["NodeGroups"][0]["NodeGroupMembers"]}
    assert roles["px-001"] == "replica"
    ec.delete_replication_group(ReplicationGroupId="px")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="px", WaiterConfig=FAST)
    # Deleting the group stops its endpoints' HAProxies.
    assert _listener_pid(primary_ep["Port"]) is None
    assert _listener_pid(reader_ep["Port"]) is None
