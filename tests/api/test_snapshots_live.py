"""Backups with real data: the aws cli and boto3 against a live server whose nodes write and load
real RDB files (on both runtimes); exports to a live S3-compatible server (moto's) and restores
from its ARN; a corrupt file fails the restore and harms nothing else; a reboot without AOF
comes back empty, as in AWS."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer, free_port, running_server
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 600}
KEYS = 100_000


def _fill(r: redis.Redis, count: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"key:{i}", f"value-{i}")
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def _check(r: redis.Redis, count: int) -> None:
    assert r.dbsize() == count
    for i in (0, 1, 777, count // 2, count - 1):
        assert r.get(f"key:{i}") == f"value-{i}".encode()


def _node(ec: Any, cluster_id: str) -> redis.Redis:
    cluster = ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0]
    endpoint = cluster["CacheNodes"][0]["Endpoint"]
    return redis.Redis(host=endpoint["Address"], port=endpoint["Port"], socket_timeout=10)


def _snapshot_status(ec: Any, name: str) -> str:
    return str(ec.describe_snapshots(SnapshotName=name)["Snapshots"][0]["SnapshotStatus"])


def _wait_snapshot(ec: Any, name: str, timeout: float = 120.0) -> None:
    """No waiter exists for snapshots (botocore has none): poll DescribeSnapshots."""
    eventually(lambda: _snapshot_status(ec, name) == "available", timeout, 0.1, f"snapshot {name} available")


def test_aws_cli_snapshot_and_restore_into_a_cluster_and_a_group(server: LiveServer, ec: Any) -> None:
    run = server.aws

    run("create-cache-cluster", "--cache-cluster-id", "src", "--engine", "redis", "--cache-node-type",
        "cache.t3.small", "--num-cache-nodes", "1")
    run("wait", "cache-cluster-available", "--cache-cluster-id", "src")
    _fill(_node(ec, "src"), KEYS)

    created = run("create-snapshot", "--cache-cluster-id", "src", "--snapshot-name", "bk")["Snapshot"]
    assert created["SnapshotStatus"] == "creating"
    eventually(lambda: run("describe-snapshots", "--snapshot-name", "bk")["Snapshots"][0]["SnapshotStatus"]
               == "available", 120, 0.2, "snapshot available")
    size = run("describe-snapshots", "--snapshot-name", "bk")["Snapshots"][0]["NodeSnapshots"][0]["CacheSize"]
    assert size.endswith(" MB")

    run("create-cache-cluster", "--cache-cluster-id", "copy", "--engine", "redis", "--cache-node-type",
        "cache.t3.small", "--num-cache-nodes", "1", "--snapshot-name", "bk")
    run("create-replication-group", "--replication-group-id", "grp", "--replication-group-description", "from bk",
        "--engine", "redis", "--cache-node-type", "cache.t3.small", "--num-cache-clusters", "2",
        "--snapshot-name", "bk")
    run("wait", "cache-cluster-available", "--cache-cluster-id", "copy")
    run("wait", "replication-group-available", "--replication-group-id", "grp")
    _check(_node(ec, "copy"), KEYS)
    for member in ("grp-001", "grp-002"):  # the primary loaded it, the replica synced it
        _check(_node(ec, member), KEYS)
    events = [e["Message"] for e in ec.describe_events(SourceType="cache-cluster", SourceIdentifier="copy")["Events"]]
    assert "Restored cache cluster copy from snapshot bk" in events


def test_group_snapshot_runs_on_a_replica_and_final_snapshot(server: LiveServer, ec: Any) -> None:
    ec.create_replication_group(ReplicationGroupId="g", ReplicationGroupDescription="g", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheClusters=2)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="g", WaiterConfig=FAST)
    primary = ec.describe_replication_groups(ReplicationGroupId="g")["ReplicationGroups"][0]["NodeGroups"][0][
        "PrimaryEndpoint"]
    _fill(redis.Redis(host=primary["Address"], port=primary["Port"], socket_timeout=10), 1000)
    ec.create_snapshot(ReplicationGroupId="g", SnapshotName="gs")
    _wait_snapshot(ec, "gs")
    snap = ec.describe_snapshots(SnapshotName="gs")["Snapshots"][0]
    assert snap["NodeSnapshots"][0]["CacheClusterId"] == "g-002"  # the replica, not the primary

    ec.delete_replication_group(ReplicationGroupId="g", FinalSnapshotIdentifier="g-final")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="g", WaiterConfig=FAST)
    ec.create_cache_cluster(CacheClusterId="back", Engine="redis", CacheNodeType="cache.t3.micro",
                            NumCacheNodes=1, SnapshotName="g-final")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="back", WaiterConfig=FAST)
    _check(_node(ec, "back"), 1000)


def test_a_corrupt_rdb_fails_the_restore_and_harms_nothing_else(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="src", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="src", WaiterConfig=FAST)
    _fill(_node(ec, "src"), 20_000)
    ec.create_snapshot(CacheClusterId="src", SnapshotName="good")
    _wait_snapshot(ec, "good")
    ec.copy_snapshot(SourceSnapshotName="good", TargetSnapshotName="bad", TargetBucket="corrupt")
    exported = server.data_dir / "exports" / "corrupt" / "bad.rdb"
    eventually(exported.is_file, 30, 0.05, "the export")
    eventually(lambda: _snapshot_status(ec, "good") == "available", 30, 0.05, "the export done")
    data = bytearray(exported.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle: only the checksum finds it
    exported.write_bytes(bytes(data))

    ec.create_cache_cluster(CacheClusterId="broken", Engine="redis", CacheNodeType="cache.t3.micro",
                            NumCacheNodes=1, SnapshotArns=["arn:aws:s3:::corrupt/bad.rdb"])

    def failed() -> bool:
        cluster = ec.describe_cache_clusters(CacheClusterId="broken")["CacheClusters"][0]
        return bool(cluster["CacheClusterStatus"] == "restore-failed")

    eventually(failed, 60, 0.1, "restore-failed")
    events = [e["Message"] for e in ec.describe_events(SourceType="cache-cluster", SourceIdentifier="broken")["Events"]]
    assert any(m.startswith("Restore failed for cache cluster broken") for m in events), events
    _check(_node(ec, "src"), 20_000)  # nothing else harmed
    assert _snapshot_status(ec, "good") == "available"
    ec.delete_cache_cluster(CacheClusterId="broken")
    ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="broken", WaiterConfig=FAST)


def test_a_reboot_without_aof_comes_back_empty(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="r", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="r", WaiterConfig=FAST)
    _fill(_node(ec, "r"), 100)
    ec.reboot_cache_cluster(CacheClusterId="r", CacheNodeIdsToReboot=["0001"])
    eventually(lambda: ec.describe_cache_clusters(CacheClusterId="r")["CacheClusters"][0]["CacheClusterStatus"]
               == "available", 30, 0.05, "rebooted")
    assert _node(ec, "r").dbsize() == 0  # RebootCacheCluster: "the contents of the cache are lost"


@contextlib.contextmanager
def _moto_s3() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                return True
            except OSError:
                return False

        eventually(answers, 30, 0.05, "moto_server answering")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_export_to_s3_and_restore_from_its_arn(tmp_path: Path) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    with _moto_s3() as s3_url, running_server("process", tmp_path, ELASTICACHE_LOCAL_S3_ENDPOINT_URL=s3_url,
                                              **credentials) as live:
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        ec = live.client()
        ec.create_cache_cluster(CacheClusterId="src", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId="src", WaiterConfig=FAST)
        _fill(_node(ec, "src"), 5000)
        ec.create_snapshot(CacheClusterId="src", SnapshotName="bk")
        _wait_snapshot(ec, "bk")
        with pytest.raises(ClientError) as missing:
            ec.copy_snapshot(SourceSnapshotName="bk", TargetSnapshotName="bk-export", TargetBucket="no-such-bucket")
        assert missing.value.response["Error"]["Code"] == "InvalidParameterValue"
        s3.create_bucket(Bucket="backups")
        ec.copy_snapshot(SourceSnapshotName="bk", TargetSnapshotName="bk-export", TargetBucket="backups")
        eventually(lambda: s3.list_objects_v2(Bucket="backups").get("KeyCount", 0) == 1, 60, 0.1, "the export")
        _wait_snapshot(ec, "bk")
        body = s3.get_object(Bucket="backups", Key="bk-export.rdb")["Body"].read()
        assert body[:5] == b"REDIS"

        ec.create_cache_cluster(CacheClusterId="fromarn", Engine="redis", CacheNodeType="cache.t3.micro",
                                NumCacheNodes=1, SnapshotArns=["arn:aws:s3:::backups/bk-export.rdb"])
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId="fromarn", WaiterConfig=FAST)
        _check(_node(ec, "fromarn"), 5000)


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=600).read())


def test_retention_two_and_five_days_of_clock_keep_two_automatic_backups(server: LiveServer, ec: Any) -> None:
    now = datetime.fromisoformat(json.loads(urllib.request.urlopen(server.url + "/api/v1/clock", timeout=10).read())[
        "now"])
    start = (now + timedelta(hours=2)).hour

    def weekly(hours: int) -> str:  # `hours` after Sunday `start`:00, rolling into Monday past midnight
        return f"{'sun' if start + hours < 24 else 'mon'}:{(start + hours) % 24:02d}:00"

    ec.create_cache_cluster(CacheClusterId="auto", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1,
                            SnapshotRetentionLimit=2, SnapshotWindow=f"{start:02d}:00-{(start + 1) % 24:02d}:00",
                            PreferredMaintenanceWindow=f"{weekly(6)}-{weekly(7)}")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="auto", WaiterConfig=FAST)
    _fill(_node(ec, "auto"), 100)

    advanced = _post(server.url + "/api/v1/clock/advance", {"seconds": 5 * 86400})
    assert len([w for w in advanced["windows"] if w["resource"] == "cache-cluster/auto"
                and w["window"].count(":") == 2]) == 5  # five snapshot windows passed
    automated = ec.describe_snapshots(CacheClusterId="auto", SnapshotSource="automated")["Snapshots"]
    assert len(automated) == 2, [s["SnapshotName"] for s in automated]
    for snap in automated:
        assert re.fullmatch(r"automatic\.auto-\d{4}-\d\d-\d\d-\d\d-\d\d", snap["SnapshotName"])
        assert snap["SnapshotStatus"] == "available" and snap["SnapshotSource"] == "automated"
    # The newest two days, taken inside the window.
    assert [s["SnapshotName"][-5:-3] for s in automated] == [f"{start:02d}"] * 2


def test_what_survives_a_machine_restart(tmp_path: Path) -> None:
    """The service down and its nodes killed (what a machine restart does): the nodes start again
    empty (no AOF: AWS would not have kept their data either), the snapshots and state are kept."""
    with running_server("process", tmp_path) as live:
        ec = live.client()
        ec.create_cache_cluster(CacheClusterId="m", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId="m", WaiterConfig=FAST)
        r = _node(ec, "m")
        _fill(r, 1000)
        ec.create_snapshot(CacheClusterId="m", SnapshotName="before")
        _wait_snapshot(ec, "before")
        pid = r.info("server")["process_id"]
        live.stop()
        os.kill(pid, 9)
        live.start()
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId="m", WaiterConfig=FAST)

        def back() -> bool:
            try:
                return bool(_node(ec, "m").ping())
            except redis.ConnectionError:
                return False

        eventually(back, 30, 0.05, "the node back")
        assert _node(ec, "m").info("server")["process_id"] != pid
        assert _node(ec, "m").dbsize() == 0
        assert _snapshot_status(ec, "before") == "available"
        ec.create_cache_cluster(CacheClusterId="again", Engine="redis", CacheNodeType="cache.t3.micro",
                                NumCacheNodes=1, SnapshotName="before")
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId="again", WaiterConfig=FAST)
        _check(_node(ec, "again"), 1000)
