"""What every example shares: a boto3 client, resources created when missing, endpoints found
through the API (never hard-coded), and the failover drills the tests run.

Against AWS, leave AWS_ENDPOINT_URL unset and give real credentials: nothing else changes. Here
it defaults to the local service, http://127.0.0.1:8379 (`make serve`)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
import redis

from tests.eventually import eventually

LOCAL = "http://127.0.0.1:8379"
QUICK = {"Delay": 1, "MaxAttempts": 120}


def endpoint_url() -> str:
    return os.environ.get("AWS_ENDPOINT_URL", LOCAL)


def elasticache() -> Any:
    """A boto3 ElastiCache client; credentials and region from the environment, else local ones."""
    return boto3.client(
        "elasticache", endpoint_url=endpoint_url(),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))


def _exists(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
        return True
    except Exception as exc:
        if "NotFound" in type(exc).__name__ or "NotFound" in str(exc):
            return False
        raise


def replication_group(ec: Any, group_id: str, engine: str = "redis", replicas: int = 1) -> dict[str, Any]:
    """The group `group_id` (created with a primary and `replicas` replicas when missing), once available."""
    if not _exists(ec.describe_replication_groups, ReplicationGroupId=group_id):
        ec.create_replication_group(
            ReplicationGroupId=group_id, ReplicationGroupDescription=f"example {group_id}", Engine=engine,
            CacheNodeType="cache.t3.micro", NumCacheClusters=replicas + 1,
            AutomaticFailoverEnabled=replicas > 0)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId=group_id, WaiterConfig=QUICK)
    return dict(ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0])


def group_endpoints(group: dict[str, Any]) -> tuple[tuple[str, int], tuple[str, int]]:
    """(primary, reader) endpoints of a cluster-mode-disabled replication group, as (host, port)."""
    ng = group["NodeGroups"][0]
    return ((ng["PrimaryEndpoint"]["Address"], ng["PrimaryEndpoint"]["Port"]),
            (ng["ReaderEndpoint"]["Address"], ng["ReaderEndpoint"]["Port"]))


def cache_cluster(ec: Any, cluster_id: str, engine: str = "redis", nodes: int = 1) -> dict[str, Any]:
    """The cache cluster `cluster_id` (created when missing), once available, with its node info."""
    if not _exists(ec.describe_cache_clusters, CacheClusterId=cluster_id):
        ec.create_cache_cluster(CacheClusterId=cluster_id, Engine=engine, CacheNodeType="cache.t3.micro",
                                NumCacheNodes=nodes)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cluster_id, WaiterConfig=QUICK)
    return dict(ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0])


def delete(ec: Any, *, group_id: str | None = None, cluster_id: str | None = None) -> None:
    """Delete what an example created (not waiting: deletion finishes in the background)."""
    if group_id and _exists(ec.describe_replication_groups, ReplicationGroupId=group_id):
        ec.delete_replication_group(ReplicationGroupId=group_id)
    if cluster_id and _exists(ec.describe_cache_clusters, CacheClusterId=cluster_id):
        ec.delete_cache_cluster(CacheClusterId=cluster_id)


# Failover drills. TestFailover is the AWS API; killing a node is this service's fault API (on AWS,
# Fault Injection Service plays that part).

def start_test_failover(ec: Any, group_id: str) -> float:
    """Start a TestFailover of the group's primary; returns when it was started (time.monotonic())."""
    started = time.monotonic()
    ec.test_failover(ReplicationGroupId=group_id, NodeGroupId="0001")
    return started


def failover_under(ec: Any, group_id: str, client: redis.Redis, workload: Repeat) -> float:
    """TestFailover of the group while `workload` runs: once it has run a few times, start the
    failover and wait until the API names another primary and `client` (on the primary endpoint)
    reaches a different server. Returns the seconds from the call to then."""
    old_primary, run_id = primary_of(ec, group_id), client.info("server")["run_id"]

    def failed_over() -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(primary_of(ec, group_id) != old_primary and client.info("server")["run_id"] != run_id)
        return False

    eventually(lambda: workload.calls > 3, timeout=10)
    started = start_test_failover(ec, group_id)
    eventually(failed_over, timeout=60, message="the failover completing")
    return time.monotonic() - started


def kill_node(cluster_id: str, node_id: str = "0001") -> str:
    """SIGKILL one cache node through the service's fault API (POST /api/v1/faults/node)."""
    body = json.dumps({"cluster_id": cluster_id, "node_id": node_id, "action": "kill"}).encode()
    request = urllib.request.Request(endpoint_url() + "/api/v1/faults/node", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["message"])


def primary_of(ec: Any, group_id: str) -> str:
    """The member cluster the API says is primary now."""
    members = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0][
        "NodeGroups"][0]["NodeGroupMembers"]
    return next(str(m["CacheClusterId"]) for m in members if m["CurrentRole"] == "primary")


class Repeat:
    """Calls `step` again and again in a thread while the `with` block runs: a workload kept going
    through a drill. Counts calls, keeps what went wrong (an exception, a failed check) and the
    slowest call: what a client of the cache saw."""

    def __init__(self, step: Callable[[], object]) -> None:
        self.step, self.calls, self.slowest = step, 0, 0.0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Repeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception as exc:
                self.failures.append(exc)
            self.calls += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
