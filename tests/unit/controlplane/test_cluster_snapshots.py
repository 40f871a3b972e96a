"""Snapshots of cluster-mode groups on the fake runtime: one RDB per shard, saved from a replica;
DescribeSnapshots as AWS shows them; copies and exports of every shard; restores into another
shard count (keys go to the shard serving their slot), from S3 files, from a group without
cluster mode; automatic backups; what AWS refuses."""

from __future__ import annotations

from typing import Any

import pytest

from engine.keymove import key_slot
from engine.runtime.fake import read_fake_rdb
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_snapshots import NODE, file_of, settle, status

BASIC = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}
KEYS = {f"key:{i}": f"value-{i}" for i in range(300)}


def _group(world: World, group_id: str) -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId=group_id)["ReplicationGroups"][0]


def _make(world: World, group_id: str, shards: int, **extra: Any) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId=group_id, NumNodeGroups=shards, ReplicasPerNodeGroup=1,
               **BASIC, **extra)
    settle(world, lambda: _group(world, group_id)["Status"] in ("available", "create-failed"))


def _fill(world: World, group_id: str, data: dict[str, str]) -> None:
    """Each shard's primary holds the keys of its slots, as a cluster client would have put them."""
    for g in _group(world, group_id)["NodeGroups"]:
        ranges = [tuple(int(x) for x in r.split("-")) for r in g["Slots"].split(",")]
        primary = next(m["CacheClusterId"] for m in g["NodeGroupMembers"] if m["CurrentRole"] == "primary")
        world.runtime.set_data(NODE.format(primary), {k: v for k, v in data.items()
                                                      if any(a <= key_slot(k.encode()) <= b for a, b in ranges)})


def _held(world: World, group_id: str) -> dict[str, str]:
    """Every key the group's shards serve, checked to sit in a slot of its own shard, on each
    member (replicas serve their primary's)."""
    out: dict[str, str] = {}
    for g in _group(world, group_id)["NodeGroups"]:
        ranges = [tuple(int(x) for x in r.split("-")) for r in g["Slots"].split(",")]
        datas = [world.runtime.data_of(NODE.format(m["CacheClusterId"])) for m in g["NodeGroupMembers"]]
        assert all(d == datas[0] for d in datas)
        assert all(any(a <= key_slot(k.encode()) <= b for a, b in ranges) for k in datas[0]), g["NodeGroupId"]
        out.update(datas[0])
    return out


def test_snapshot_has_one_file_per_shard_from_a_replica(world: World) -> None:
    _make(world, "cl", 3)
    _fill(world, "cl", KEYS)
    created = world.call("CreateSnapshot", ReplicationGroupId="cl", SnapshotName="s3")["Snapshot"]
    assert created["SnapshotStatus"] == "creating" and created["NumNodeGroups"] == 3
    settle(world, lambda: status(world, "s3") == "available")
    snap = world.call("DescribeSnapshots", SnapshotName="s3", ShowNodeGroupConfig=True)["Snapshots"][0]
    assert snap["ReplicationGroupId"] == "cl" and snap["AutomaticFailover"] == "enabled"
    nodes = snap["NodeSnapshots"]
    assert [n["NodeGroupId"] for n in nodes] == ["0001", "0002", "0003"]
    assert [n["CacheClusterId"] for n in nodes] == ["cl-0001-002", "cl-0002-002", "cl-0003-002"]  # the replicas
    assert [n["NodeGroupConfiguration"]["Slots"] for n in nodes] == ["0-5461", "5462-10922", "10923-16383"]
    assert all(n["NodeGroupConfiguration"]["ReplicaCount"] == 1 for n in nodes)
    shards = file_of(world, "s3").with_name("s3.shards")
    saved = {}
    for n in ("0001", "0002", "0003"):
        saved.update(read_fake_rdb(shards / f"{n}.rdb")[1])
    assert saved == KEYS
    assert _group(world, "cl")["Status"] == "available"


@pytest.mark.parametrize("shards", [2, 4])
def test_restore_into_another_shard_count_puts_every_key_in_its_slots_shard(world: World, shards: int) -> None:
    _make(world, "cl", 3)
    _fill(world, "cl", KEYS)
    world.call("CreateSnapshot", ReplicationGroupId="cl", SnapshotName="s3")
    settle(world, lambda: status(world, "s3") == "available")
    _make(world, "back", shards, SnapshotName="s3")
    group = _group(world, "back")
    assert group["Status"] == "available" and len(group["NodeGroups"]) == shards
    assert _held(world, "back") == KEYS
    assert not [c for c in world.runtime.list_managed() if "restore" in c.name]  # scratch nodes gone
    events = [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group",
                                               SourceIdentifier="back")["Events"]]
    assert "Restored replication group back from snapshot s3" in events


def test_copy_export_and_restore_from_the_exported_files(world: World) -> None:
    _make(world, "cl", 2)
    _fill(world, "cl", KEYS)
    world.call("CreateSnapshot", ReplicationGroupId="cl", SnapshotName="s2")
    settle(world, lambda: status(world, "s2") == "available")
    world.call("CopySnapshot", SourceSnapshotName="s2", TargetSnapshotName="c2")
    settle(world, lambda: status(world, "c2") == "available")
    copied = world.call("DescribeSnapshots", SnapshotName="c2")["Snapshots"][0]
    assert [n["NodeGroupId"] for n in copied["NodeSnapshots"]] == ["0001", "0002"]
    world.call("CopySnapshot", SourceSnapshotName="c2", TargetSnapshotName="out", TargetBucket="bkt")
    settle(world, lambda: status(world, "c2") == "available")
    exported = world.data_dir / "exports" / "bkt"
    assert sorted(p.name for p in exported.iterdir()) == ["out-0001.rdb", "out-0002.rdb"]
    _make(world, "fromarn", 3, SnapshotArns=["arn:aws:s3:::bkt/out-0001.rdb", "arn:aws:s3:::bkt/out-0002.rdb"])
    assert _held(world, "fromarn") == KEYS
    world.call("DeleteSnapshot", SnapshotName="c2")
    settle(world, lambda: not world.call("DescribeSnapshots", SnapshotName="s2")["Snapshots"][1:])
    assert not file_of(world, "c2").with_name("c2.shards").exists()
    assert file_of(world, "s2").with_name("s2.shards").is_dir()


def test_a_snapshot_without_cluster_mode_seeds_a_cluster_and_not_the_reverse(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="plain", NumCacheClusters=2, **BASIC)
    settle(world, lambda: _group(world, "plain")["Status"] == "available")
    primary = _group(world, "plain")["NodeGroups"][0]["NodeGroupMembers"][0]["CacheClusterId"]
    world.runtime.set_data(NODE.format(primary), KEYS)
    world.call("CreateSnapshot", ReplicationGroupId="plain", SnapshotName="one")
    settle(world, lambda: status(world, "one") == "available")
    _make(world, "cl", 3, SnapshotName="one")
    assert _held(world, "cl") == KEYS
    world.call("CreateSnapshot", ReplicationGroupId="cl", SnapshotName="three")
    settle(world, lambda: status(world, "three") == "available")
    for op, params in (("CreateReplicationGroup", {"ReplicationGroupId": "x", "NumCacheClusters": 1, **BASIC}),
                       ("CreateCacheCluster", {"CacheClusterId": "x", "Engine": "redis", "NumCacheNodes": 1,
                                               "CacheNodeType": "cache.t3.micro"})):
        with pytest.raises(ApiError) as err:
            world.call(op, SnapshotName="three", **params)
        assert err.value.code == "InvalidParameterCombination" and "cluster mode enabled" in err.value.message


def test_a_corrupt_shard_file_fails_the_restore(world: World) -> None:
    from engine.runtime.fake import CORRUPT

    _make(world, "cl", 2)
    world.call("CreateSnapshot", ReplicationGroupId="cl", SnapshotName="s2")
    settle(world, lambda: status(world, "s2") == "available")
    file_of(world, "s2").with_name("s2.shards").joinpath("0002.rdb").write_bytes(CORRUPT)
    _make(world, "back", 2, SnapshotName="s2")
    group = _group(world, "back")
    assert group["Status"] == "create-failed"


def test_automatic_backups_and_final_snapshot_of_a_cluster(world: World) -> None:
    _make(world, "cl", 2, SnapshotRetentionLimit=1, SnapshotWindow="13:00-14:00",
          PreferredMaintenanceWindow="sun:10:00-sun:11:00")
    _fill(world, "cl", KEYS)
    world.clock.advance(3600)
    settle(world, lambda: any(s["SnapshotSource"] == "automated" and s["SnapshotStatus"] == "available"
                              for s in world.call("DescribeSnapshots")["Snapshots"]))
    auto = next(s for s in world.call("DescribeSnapshots")["Snapshots"] if s["SnapshotSource"] == "automated")
    assert len(auto["NodeSnapshots"]) == 2 and auto["NumNodeGroups"] == 2
    world.call("DeleteReplicationGroup", ReplicationGroupId="cl", FinalSnapshotIdentifier="last")
    settle(world, lambda: status(world, "last") == "available" and not world.call(
        "DescribeReplicationGroups")["ReplicationGroups"])
    assert len(world.call("DescribeSnapshots", SnapshotName="last")["Snapshots"][0]["NodeSnapshots"]) == 2
