"""Snapshots on the fake runtime: CreateSnapshot has the node write an RDB file, kept under the
data directory; copies, exports, deletes; restores start a new cache's primary with that file;
final snapshots come before a delete; the quota, the states and every refusal AWS names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.runtime.fake import CORRUPT, read_fake_rdb
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 1}
NODE = "123456789012-us-east-1-{}-0001"


def settle(world: World, done: Callable[[], bool] | None = None) -> None:
    """Settle the loop, the snapshot jobs (threads of their own) included; every resource is
    looked at once, as the service's periodic resync does (windows are seen that way)."""
    world.service.controller.enqueue_all()
    for _ in range(200):
        world.settle()
        world.service.jobs.wait_idle(2.0)
        world.settle()
        if (done is None or done()) and not world.service.jobs.busy():
            return
        world.clock.advance(0.05)
    raise AssertionError("not settled")


def snapshot(world: World, name: str) -> dict:
    return world.call("DescribeSnapshots", SnapshotName=name)["Snapshots"][0]


def status(world: World, name: str) -> str:
    return snapshot(world, name)["SnapshotStatus"]


def cluster_status(world: World, cluster_id: str) -> str:
    return world.call("DescribeCacheClusters", CacheClusterId=cluster_id)["CacheClusters"][0]["CacheClusterStatus"]


def redis_cluster(world: World, cluster_id: str = "web", **extra: object) -> None:
    world.call("CreateCacheCluster", CacheClusterId=cluster_id, **REDIS, **extra)
    settle(world, lambda: cluster_status(world, cluster_id) == "available")


def file_of(world: World, name: str) -> Path:
    return world.data_dir / "snapshots" / "123456789012" / "us-east-1" / f"{name}.rdb"


def test_a_cluster_snapshot_is_written_by_its_node_and_kept(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"k1": "v1", "k2": "v2"})
    created = world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk1")["Snapshot"]
    assert created["SnapshotStatus"] == "creating" and created["SnapshotSource"] == "manual"
    assert created["CacheClusterId"] == "web" and created["Engine"] == "redis"
    assert cluster_status(world, "web") == "snapshotting"
    with pytest.raises(ApiError) as refused:
        world.call("ModifyCacheCluster", CacheClusterId="web", SnapshotRetentionLimit=3)
    assert refused.value.code == "InvalidCacheClusterState"

    settle(world, lambda: status(world, "bk1") == "available")
    snap = snapshot(world, "bk1")
    (node,) = snap["NodeSnapshots"]
    assert node["CacheNodeId"] == "0001" and node["CacheSize"].endswith(" MB") and "SnapshotCreateTime" in node
    assert snap["ARN"] == "arn:aws:elasticache:us-east-1:123456789012:snapshot:bk1"
    assert read_fake_rdb(file_of(world, "bk1")) == (NODE.format("web"), {"k1": "v1", "k2": "v2"})
    assert cluster_status(world, "web") == "available"
    assert "Snapshot succeeded for snapshot with ID 'bk1' of cache cluster with ID 'web'" in world.events("web")


def test_create_snapshot_refusals(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro")
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    cases = [
        ({"CacheClusterId": "web", "SnapshotName": "a"}, "InvalidCacheClusterState"),  # still creating
        ({"CacheClusterId": "nope", "SnapshotName": "a"}, "CacheClusterNotFound"),
        ({"ReplicationGroupId": "nope", "SnapshotName": "a"}, "ReplicationGroupNotFoundFault"),
        ({"SnapshotName": "a"}, "InvalidParameterCombination"),
        ({"CacheClusterId": "web", "ReplicationGroupId": "g", "SnapshotName": "a"}, "InvalidParameterCombination"),
        ({"CacheClusterId": "web", "SnapshotName": "bad--name"}, "InvalidParameterValue"),
    ]
    for params, code in cases:
        with pytest.raises(ApiError) as err:
            world.call("CreateSnapshot", **params)
        assert err.value.code == code, params
    settle(world, lambda: cluster_status(world, "mc") == "available" and cluster_status(world, "web") == "available")
    with pytest.raises(ApiError) as err:
        world.call("CreateSnapshot", CacheClusterId="mc", SnapshotName="a")
    assert err.value.code == "SnapshotFeatureNotSupportedFault"
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="a")
    with pytest.raises(ApiError) as err:
        world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="b")  # one at a time
    assert err.value.code == "InvalidCacheClusterState"
    settle(world, lambda: status(world, "a") == "available")
    with pytest.raises(ApiError) as err:
        world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="a")
    assert err.value.code == "SnapshotAlreadyExistsFault"


def test_twenty_manual_snapshots_per_node_per_day(world: World) -> None:
    redis_cluster(world)
    for i in range(20):
        world.call("CreateSnapshot", CacheClusterId="web", SnapshotName=f"s{i}")
        settle(world, lambda i=i: status(world, f"s{i}") == "available")
    with pytest.raises(ApiError) as err:
        world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="s20")
    assert err.value.code == "SnapshotQuotaExceededFault"
    world.clock.advance(24 * 3600 + 1)
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="s20")


def test_a_failed_save_fails_the_snapshot_and_frees_the_cluster(world: World) -> None:
    redis_cluster(world)
    world.runtime.fail_saves(NODE.format("web"))
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bad")
    settle(world, lambda: status(world, "bad") == "failed")
    assert cluster_status(world, "web") == "available"
    assert any(m.startswith("Snapshot failed for snapshot with ID 'bad' of cache cluster with ID 'web'")
               for m in world.events("web"))
    assert not file_of(world, "bad").exists()
    world.call("DeleteSnapshot", SnapshotName="bad")  # a failed one can go


def _group(world: World, group_id: str = "grp", **extra: object) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId=group_id, ReplicationGroupDescription="g",
               Engine="redis", CacheNodeType="cache.t3.micro", NumCacheClusters=3, **extra)
    settle(world, lambda: world.call("DescribeReplicationGroups", ReplicationGroupId=group_id)[
        "ReplicationGroups"][0]["Status"] == "available")


def test_a_group_snapshot_runs_on_a_replica_or_the_member_asked_for(world: World) -> None:
    _group(world)
    primary = NODE.format("grp-001")
    world.runtime.set_data(primary, {"a": "1"})
    world.call("CreateSnapshot", ReplicationGroupId="grp", SnapshotName="g1")
    rg = world.call("DescribeReplicationGroups", ReplicationGroupId="grp")["ReplicationGroups"][0]
    assert rg["Status"] == "snapshotting"
    settle(world, lambda: status(world, "g1") == "available")
    saved_from, data = read_fake_rdb(file_of(world, "g1"))
    assert saved_from != primary and data == {"a": "1"}  # a replica, holding the primary's data
    snap = world.call("DescribeSnapshots", SnapshotName="g1", ShowNodeGroupConfig=True)["Snapshots"][0]
    assert snap["ReplicationGroupId"] == "grp" and "CacheClusterId" not in snap
    assert snap["NodeSnapshots"][0]["NodeGroupConfiguration"]["ReplicaCount"] == 2
    assert ("Snapshot succeeded for snapshot with ID 'g1' of replication group with ID 'grp'"
            in [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group")["Events"]])

    world.call("CreateSnapshot", CacheClusterId="grp-003", SnapshotName="g2")
    settle(world, lambda: status(world, "g2") == "available")
    assert read_fake_rdb(file_of(world, "g2"))[0] == NODE.format("grp-003")


def test_describe_snapshots_filters_and_pages(world: World) -> None:
    redis_cluster(world, "a")
    redis_cluster(world, "b")
    for i in range(3):
        for cid in ("a", "b"):
            world.call("CreateSnapshot", CacheClusterId=cid, SnapshotName=f"{cid}{i}")
            settle(world, lambda cid=cid, i=i: status(world, f"{cid}{i}") == "available")
    assert [s["SnapshotName"] for s in world.call("DescribeSnapshots", CacheClusterId="a")["Snapshots"]] == \
        ["a0", "a1", "a2"]
    assert world.call("DescribeSnapshots", SnapshotSource="automated")["Snapshots"] == []
    assert len(world.call("DescribeSnapshots", SnapshotSource="manual")["Snapshots"]) == 6
    for params, code in [({"SnapshotName": "none"}, "SnapshotNotFoundFault"),
                         ({"CacheClusterId": "none"}, "CacheClusterNotFound"),
                         ({"SnapshotSource": "other"}, "InvalidParameterValue"),
                         ({"MaxRecords": 51}, "InvalidParameterValue"),
                         ({"CacheClusterId": "a", "ReplicationGroupId": "g"}, "InvalidParameterCombination")]:
        with pytest.raises(ApiError) as err:
            world.call("DescribeSnapshots", **params)
        assert err.value.code == code, params
    for i in range(3, 23):
        world.call("CopySnapshot", SourceSnapshotName="a0", TargetSnapshotName=f"c{i}")
    first = world.call("DescribeSnapshots", MaxRecords=20)
    rest = world.call("DescribeSnapshots", MaxRecords=20, Marker=first["Marker"])
    names = [s["SnapshotName"] for s in first["Snapshots"] + rest["Snapshots"]]
    assert len(names) == 26 == len(set(names)) and "Marker" not in rest


def test_copy_export_and_delete(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"x": "y"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="orig")
    settle(world, lambda: status(world, "orig") == "available")

    copied = world.call("CopySnapshot", SourceSnapshotName="orig", TargetSnapshotName="copy")["Snapshot"]
    assert copied["SnapshotName"] == "copy" and copied["SnapshotStatus"] == "copying"
    settle(world, lambda: status(world, "copy") == "available")
    assert file_of(world, "copy").read_bytes() == file_of(world, "orig").read_bytes()
    for params, code in [({"SourceSnapshotName": "none", "TargetSnapshotName": "z"}, "SnapshotNotFoundFault"),
                         ({"SourceSnapshotName": "orig", "TargetSnapshotName": "copy"}, "SnapshotAlreadyExistsFault"),
                         ({"SourceSnapshotName": "orig", "TargetSnapshotName": "z", "TargetBucket": "Bad_Bucket"},
                          "InvalidParameterValue")]:
        with pytest.raises(ApiError) as err:
            world.call("CopySnapshot", **params)
        assert err.value.code == code, params

    exported = world.call("CopySnapshot", SourceSnapshotName="orig", TargetSnapshotName="out/orig",
                          TargetBucket="my-bucket")["Snapshot"]
    assert exported["SnapshotName"] == "orig" and exported["SnapshotStatus"] == "exporting"
    settle(world, lambda: status(world, "orig") == "available")
    target = world.data_dir / "exports" / "my-bucket" / "out" / "orig.rdb"
    assert target.read_bytes() == file_of(world, "orig").read_bytes()
    with pytest.raises(ApiError) as err:  # never overwritten
        world.call("CopySnapshot", SourceSnapshotName="orig", TargetSnapshotName="out/orig", TargetBucket="my-bucket")
    assert err.value.code == "SnapshotAlreadyExistsFault"

    deleted = world.call("DeleteSnapshot", SnapshotName="copy")["Snapshot"]
    assert deleted["SnapshotStatus"] == "deleting"
    settle(world, lambda: not world.call("DescribeSnapshots", SnapshotSource="manual")["Snapshots"][1:])
    assert not file_of(world, "copy").exists()
    with pytest.raises(ApiError) as err:
        world.call("DeleteSnapshot", SnapshotName="copy")
    assert err.value.code == "SnapshotNotFoundFault"
    tags = world.call("AddTagsToResource", ResourceName=snapshot(world, "orig")["ARN"],
                      Tags=[{"Key": "team", "Value": "core"}])
    assert tags["TagList"] == [{"Key": "team", "Value": "core"}]


def test_restore_starts_the_new_cluster_with_the_snapshot_data(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"k": "v"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk")
    settle(world, lambda: status(world, "bk") == "available")

    world.call("CreateCacheCluster", CacheClusterId="copy", SnapshotName="bk", **REDIS)
    assert status(world, "bk") == "restoring"
    with pytest.raises(ApiError) as err:
        world.call("DeleteSnapshot", SnapshotName="bk")
    assert err.value.code == "InvalidSnapshotState"
    settle(world, lambda: cluster_status(world, "copy") == "available")
    assert world.runtime.data_of(NODE.format("copy")) == {"k": "v"}
    assert world.runtime.seed_of(NODE.format("copy")) == str(file_of(world, "bk"))
    assert "Restored cache cluster copy from snapshot bk" in world.events("copy")
    assert status(world, "bk") == "available"
    # A later restart of the node starts it empty (no AOF), as a reboot does in AWS.
    world.call("RebootCacheCluster", CacheClusterId="copy", CacheNodeIdsToReboot=["0001"])
    settle(world, lambda: cluster_status(world, "copy") == "available")
    assert world.runtime.data_of(NODE.format("copy")) == {}

    for params, code in [({"SnapshotName": "none"}, "SnapshotNotFoundFault"),
                         ({"SnapshotArns": ["arn:aws:s3:::bucket/missing.rdb"]}, "InvalidParameterValue"),
                         ({"SnapshotArns": ["not-an-arn"]}, "InvalidParameterValue"),
                         ({"SnapshotName": "bk", "SnapshotArns": ["arn:aws:s3:::b/k"]}, "InvalidParameterCombination")]:
        with pytest.raises(ApiError) as err:
            world.call("CreateCacheCluster", CacheClusterId="other", **REDIS, **params)
        assert err.value.code == code, params


def test_a_corrupt_file_fails_the_restore_and_harms_nothing_else(world: World) -> None:
    redis_cluster(world)
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk")
    settle(world, lambda: status(world, "bk") == "available")
    original = file_of(world, "bk").read_bytes()
    file_of(world, "bk").write_bytes(original[:12] + CORRUPT + original[12:])  # only a load finds it
    world.call("CreateCacheCluster", CacheClusterId="broken", SnapshotName="bk", **REDIS)
    settle(world, lambda: cluster_status(world, "broken") == "restore-failed")
    assert any(m.startswith("Restore failed for cache cluster broken") for m in world.events("broken"))
    assert world.runtime.inspect(NODE.format("broken")) is None  # no node serves an empty dataset
    assert cluster_status(world, "web") == "available"

    file_of(world, "bk").write_bytes(original[: len(original) // 2])  # truncated: refused before any start
    world.call("CreateCacheCluster", CacheClusterId="cut", SnapshotName="bk", **REDIS)
    settle(world, lambda: cluster_status(world, "cut") == "restore-failed")
    assert world.runtime.inspect(NODE.format("cut")) is None
    world.call("DeleteCacheCluster", CacheClusterId="cut")
    settle(world, lambda: not any(c["CacheClusterId"] == "cut" for c in
                                  world.call("DescribeCacheClusters")["CacheClusters"]))


def test_a_group_restored_from_an_export(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"a": "1", "b": "2"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk")
    settle(world, lambda: status(world, "bk") == "available")
    world.call("CopySnapshot", SourceSnapshotName="bk", TargetSnapshotName="bk", TargetBucket="exports")
    settle(world, lambda: status(world, "bk") == "available")
    _group(world, "fromarn", SnapshotArns=["arn:aws:s3:::exports/bk.rdb"])
    for member in ("fromarn-001", "fromarn-002", "fromarn-003"):
        assert world.runtime.data_of(NODE.format(member)) == {"a": "1", "b": "2"}
    assert world.runtime.seed_of(NODE.format("fromarn-001")) is not None
    assert world.runtime.seed_of(NODE.format("fromarn-002")) is None  # replicas sync from the primary


def test_final_snapshot_before_delete_and_a_failed_one_stops_it(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"k": "v"})
    deleting = world.call("DeleteCacheCluster", CacheClusterId="web", FinalSnapshotIdentifier="last")["CacheCluster"]
    assert deleting["CacheClusterStatus"] == "deleting"
    settle(world, lambda: not world.call("DescribeCacheClusters")["CacheClusters"])
    assert status(world, "last") == "available"
    assert read_fake_rdb(file_of(world, "last"))[1] == {"k": "v"}

    redis_cluster(world, "web2")
    world.runtime.fail_saves(NODE.format("web2"))
    world.call("DeleteCacheCluster", CacheClusterId="web2", FinalSnapshotIdentifier="last2")
    settle(world, lambda: status(world, "last2") == "failed")
    settle(world, lambda: cluster_status(world, "web2") == "available")
    assert any(m.startswith("Final snapshot last2 failed") for m in world.events("web2"))
    with pytest.raises(ApiError) as err:
        world.call("DeleteCacheCluster", CacheClusterId="web2", FinalSnapshotIdentifier="last")
    assert err.value.code == "SnapshotAlreadyExistsFault"
    world.call("DeleteCacheCluster", CacheClusterId="web2")
    settle(world, lambda: not world.call("DescribeCacheClusters")["CacheClusters"])


def test_group_final_snapshot(world: World) -> None:
    _group(world)
    world.call("DeleteReplicationGroup", ReplicationGroupId="grp", FinalSnapshotIdentifier="grp-final")
    settle(world, lambda: not world.call("DescribeReplicationGroups")["ReplicationGroups"])
    snap = snapshot(world, "grp-final")
    assert snap["SnapshotStatus"] == "available" and snap["ReplicationGroupId"] == "grp"


def test_automatic_backups_once_a_day_in_the_window_and_pruned(world: World) -> None:
    redis_cluster(world, SnapshotRetentionLimit=2, SnapshotWindow="05:00-06:00",
                  PreferredMaintenanceWindow="sun:10:00-sun:11:00")
    world.runtime.set_data(NODE.format("web"), {"k": "v"})
    for _ in range(5 * 24 * 6):  # five days, ten minutes at a time (the clock starts at 12:00): once a window
        world.clock.advance(600)
        settle(world)
    automated = world.call("DescribeSnapshots", SnapshotSource="automated")["Snapshots"]
    assert [s["SnapshotName"] for s in automated] == ["automatic.web-2026-01-05-05-00",
                                                      "automatic.web-2026-01-06-05-00"]
    assert {s["SnapshotStatus"] for s in automated} == {"available"}
    assert read_fake_rdb(file_of(world, automated[0]["SnapshotName"]))[1] == {"k": "v"}
    assert len(list(file_of(world, "x").parent.glob("automatic.*.rdb"))) == 2  # pruned ones' files are gone

    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="mine")
    settle(world, lambda: status(world, "mine") == "available")
    world.call("DeleteCacheCluster", CacheClusterId="web")
    settle(world, lambda: not world.call("DescribeCacheClusters")["CacheClusters"])
    assert [s["SnapshotName"] for s in world.call("DescribeSnapshots")["Snapshots"]] == ["mine"]


def test_a_failing_automatic_backup_is_an_event_and_a_retry(world: World) -> None:
    redis_cluster(world, SnapshotRetentionLimit=1, SnapshotWindow="13:00-14:00",
                  PreferredMaintenanceWindow="sun:10:00-sun:11:00")
    world.runtime.fail_saves(NODE.format("web"))
    world.clock.advance(3600)
    settle(world, lambda: any("it is retried" in m for m in world.events("web")))
    world.runtime.fail_saves(NODE.format("web"), fail=False)
    world.clock.advance(60)
    settle(world, lambda: status(world, "automatic.web-2026-01-01-13-00") == "available")
    assert cluster_status(world, "web") == "available"


def test_a_failed_final_snapshot_leaves_a_whole_cache_that_works_on(world: World) -> None:
    redis_cluster(world, SnapshotRetentionLimit=3, SnapshotWindow="13:00-14:00",
                  PreferredMaintenanceWindow="sun:10:00-sun:11:00")
    world.clock.advance(3600)
    settle(world, lambda: status(world, "automatic.web-2026-01-01-13-00") == "available")
    world.runtime.fail_saves(NODE.format("web"))
    world.call("DeleteCacheCluster", CacheClusterId="web", FinalSnapshotIdentifier="last")
    settle(world, lambda: status(world, "last") == "failed" and cluster_status(world, "web") == "available")
    # Nothing of the delete happened: the automatic backup stays, the nodes read available.
    assert status(world, "automatic.web-2026-01-01-13-00") == "available"
    node = world.call("DescribeCacheClusters", CacheClusterId="web", ShowCacheNodeInfo=True)["CacheClusters"][0][
        "CacheNodes"][0]
    assert node["CacheNodeStatus"] == "available"
    world.runtime.fail_saves(NODE.format("web"), fail=False)
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="after")  # it works on
    settle(world, lambda: status(world, "after") == "available")
    assert cluster_status(world, "web") == "available"
    world.clock.advance(86400)
    settle(world, lambda: len(world.call("DescribeSnapshots", SnapshotSource="automated")["Snapshots"]) == 2)


def test_a_deleted_snapshots_old_job_is_never_read_by_a_new_one_of_that_name(world: World) -> None:
    from controlplane.state.snapshots import Snapshot

    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"old": "1"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="same")
    world.settle()
    world.service.jobs.wait_idle(5)  # the save ended; no pass has read it yet
    key = next(k for k in world.service.store.resource_keys() if k.kind == Snapshot.KIND)
    # A reset marks it for deletion while its job is unread.
    world.service.store.update(key, Snapshot, lambda r: setattr(r.spec, "delete_requested", True))
    settle(world, lambda: not world.call("DescribeSnapshots")["Snapshots"])
    world.runtime.set_data(NODE.format("web"), {"new": "2"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="same")
    settle(world, lambda: status(world, "same") == "available")
    assert read_fake_rdb(file_of(world, "same"))[1] == {"new": "2"}


def test_a_failed_backup_never_pushes_the_good_one_out(world: World) -> None:
    redis_cluster(world, SnapshotRetentionLimit=1, SnapshotWindow="13:00-14:00",
                  PreferredMaintenanceWindow="sun:10:00-sun:11:00")
    world.clock.advance(3600)
    settle(world, lambda: status(world, "automatic.web-2026-01-01-13-00") == "available")
    world.runtime.fail_saves(NODE.format("web"))
    world.clock.advance(86400)
    for _ in range(4):  # every attempt, each after its retry delay (on the service clock)
        settle(world)
        world.clock.advance(31)
    names = {s["SnapshotName"]: s["SnapshotStatus"] for s in
             world.call("DescribeSnapshots", SnapshotSource="automated")["Snapshots"]}
    assert names["automatic.web-2026-01-01-13-00"] == "available"
    assert names["automatic.web-2026-01-02-13-00"] == "failed"
    retries = [m for m in world.events("web") if "it is retried" in m]
    assert len(retries) == 2  # three attempts in all, spaced by the retry delay


def test_a_transient_start_failure_is_not_a_failed_restore(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"k": "v"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk")
    settle(world, lambda: status(world, "bk") == "available")
    world.runtime.fail_next_starts(1)
    world.call("CreateCacheCluster", CacheClusterId="copy", SnapshotName="bk", **REDIS)
    settle(world, lambda: cluster_status(world, "copy") == "available")
    assert world.runtime.data_of(NODE.format("copy")) == {"k": "v"}


def test_a_restart_of_the_service_mid_save_finishes_the_snapshot(world: World) -> None:
    redis_cluster(world)
    world.runtime.set_data(NODE.format("web"), {"k": "v"})
    world.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk")
    world.settle()  # the save was submitted; the service goes away before any pass reads it
    world.service.jobs.wait_idle(5)
    restarted = world.restart()
    settle(restarted, lambda: status(restarted, "bk") == "available")
    assert cluster_status(restarted, "web") == "available"
    assert read_fake_rdb(file_of(restarted, "bk"))[1] == {"k": "v"}
    restarted.service.store.close()


def test_a_group_whose_final_snapshot_fails_stays(world: World) -> None:
    _group(world)
    for member in ("grp-001", "grp-002", "grp-003"):
        world.runtime.fail_saves(NODE.format(member))
    world.call("DeleteReplicationGroup", ReplicationGroupId="grp", FinalSnapshotIdentifier="gone")
    settle(world, lambda: status(world, "gone") == "failed")
    settle(world, lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="grp")["ReplicationGroups"][0][
        "Status"] == "available")
    events = [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group")["Events"]]
    assert any(m.startswith("Final snapshot gone failed") for m in events)
