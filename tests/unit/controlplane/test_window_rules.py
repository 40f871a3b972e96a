"""Maintenance and snapshot windows through the Query API: the defaults AWS chooses never overlap
each other or the window the caller gave, and Create and Modify refuse an overlap alike."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.handlers.defaults import default_maintenance_window, default_snapshot_window, windows_for
from controlplane.state.records import CacheCluster
from controlplane.windows import overlap, parse
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 1}
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}
OVERLAP = ("InvalidParameterCombination", "The snapshot window and the maintenance window must not overlap.")
IDS = [f"cache-{i}" for i in range(2000)]


def _refused(world: World, operation: str, **params: Any) -> tuple[str, str]:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.status == 400
    return err.value.code, err.value.message


def _cluster(world: World, cluster_id: str = "web") -> dict[str, Any]:
    return world.call("DescribeCacheClusters", CacheClusterId=cluster_id)["CacheClusters"][0]


def _group(world: World, group_id: str = "rg") -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId=group_id)["ReplicationGroups"][0]


def _same_hour_on_monday(daily: str) -> str:
    start, end = daily.split("-")
    return f"mon:{start}-mon:{end}" if end > start else f"mon:{start}-tue:{end}"


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "eu-central-1"])
def test_no_generated_id_gets_overlapping_defaults(world: World, region: str) -> None:
    ctx = world.service.services.context("123456789012", region)
    chosen = [windows_for(ctx, None, None, i) for i in IDS]
    assert sum(overlap(mw, sw) for mw, sw in chosen) == 0
    assert all(parse(sw).length == 60 and parse(mw).length == 60 for mw, sw in chosen)
    # The hash alone would collide for some of them: the check above has something to catch.
    naive = [(default_maintenance_window(i, region), default_snapshot_window(i)) for i in IDS]
    assert sum(overlap(mw, sw) for mw, sw in naive) > 0


def test_defaults_are_stable_per_id(world: World) -> None:
    ctx = world.service.services.context("123456789012", "us-east-1")
    assert windows_for(ctx, None, None, "web") == windows_for(ctx, None, None, "web")
    assert len({windows_for(ctx, None, None, i)[1] for i in IDS[:200]}) > 12  # spread over the day


def test_a_given_maintenance_window_steers_the_default_snapshot_window(world: World) -> None:
    # A maintenance window on exactly the hour the snapshot default would take.
    maintenance = _same_hour_on_monday(default_snapshot_window("web"))
    world.call("CreateCacheCluster", CacheClusterId="web", PreferredMaintenanceWindow=maintenance, **REDIS)
    cluster = _cluster(world)
    assert cluster["PreferredMaintenanceWindow"] == maintenance
    assert not overlap(maintenance, cluster["SnapshotWindow"])
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", PreferredMaintenanceWindow=
               _same_hour_on_monday(default_snapshot_window("rg")), **GROUP)
    group = world.call("DescribeCacheClusters", CacheClusterId="rg-001")["CacheClusters"][0]
    assert not overlap(group["PreferredMaintenanceWindow"], _group(world)["SnapshotWindow"])


def test_a_given_snapshot_window_steers_the_default_maintenance_window(world: World) -> None:
    start = default_maintenance_window("web", "us-east-1").split("-")[0][4:]
    hour = int(start[:2])
    snapshot = f"{hour:02d}:00-{(hour + 2) % 24:02d}:00"  # covers the default hour and the next
    world.call("CreateCacheCluster", CacheClusterId="web", SnapshotWindow=snapshot, **REDIS)
    cluster = _cluster(world)
    assert cluster["SnapshotWindow"] == snapshot
    assert not overlap(cluster["PreferredMaintenanceWindow"], snapshot)
    assert int(cluster["PreferredMaintenanceWindow"].split("-")[0][4:6]) in range(3, 11)  # still in the block


def test_no_room_for_a_default_is_the_overlap_error(world: World) -> None:
    assert _refused(world, "CreateCacheCluster", CacheClusterId="web",
                    PreferredMaintenanceWindow="mon:00:00-tue:00:30", **REDIS) == OVERLAP
    assert _refused(world, "CreateCacheCluster", CacheClusterId="web", SnapshotWindow="00:00-23:30",
                    **REDIS) == OVERLAP
    # Memcached has no snapshot window: nothing to overlap.
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               PreferredMaintenanceWindow="mon:00:00-tue:00:30")


def test_create_refuses_overlapping_windows(world: World) -> None:
    both = {"PreferredMaintenanceWindow": "wed:05:00-wed:06:00", "SnapshotWindow": "05:30-06:30"}
    assert _refused(world, "CreateCacheCluster", CacheClusterId="web", **both, **REDIS) == OVERLAP
    assert _refused(world, "CreateReplicationGroup", ReplicationGroupId="rg", **both, **GROUP) == OVERLAP
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    assert world.call("DescribeReplicationGroups")["ReplicationGroups"] == []
    touching = {"PreferredMaintenanceWindow": "wed:05:00-wed:06:00", "SnapshotWindow": "06:00-07:00"}
    world.call("CreateCacheCluster", CacheClusterId="web", **touching, **REDIS)
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **touching, **GROUP)


def test_modify_cache_cluster_refuses_an_overlap_with_the_other_window(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", PreferredMaintenanceWindow="wed:05:00-wed:06:00",
               SnapshotWindow="10:00-11:00", **REDIS)
    world.settle()
    before = _cluster(world)
    assert _refused(world, "ModifyCacheCluster", CacheClusterId="web", SnapshotWindow="05:30-06:30") == OVERLAP
    assert _refused(world, "ModifyCacheCluster", CacheClusterId="web",
                    PreferredMaintenanceWindow="sun:10:30-sun:11:30") == OVERLAP
    assert _refused(world, "ModifyCacheCluster", CacheClusterId="web", SnapshotWindow="23:00-05:01") == OVERLAP
    assert _cluster(world) == before
    # Both at once: judged together, so a swap is fine.
    world.call("ModifyCacheCluster", CacheClusterId="web", PreferredMaintenanceWindow="sun:10:00-sun:11:00",
               SnapshotWindow="05:00-06:00")
    after = _cluster(world)
    assert (after["PreferredMaintenanceWindow"], after["SnapshotWindow"]) == ("sun:10:00-sun:11:00", "05:00-06:00")


def test_modify_replication_group_refuses_an_overlap_with_the_other_window(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2,
               PreferredMaintenanceWindow="wed:05:00-wed:06:00", SnapshotWindow="10:00-11:00", **GROUP)
    world.settle()
    before = _group(world)
    assert _refused(world, "ModifyReplicationGroup", ReplicationGroupId="rg", SnapshotWindow="05:30-06:30",
                    ApplyImmediately=True) == OVERLAP
    assert _refused(world, "ModifyReplicationGroup", ReplicationGroupId="rg",
                    PreferredMaintenanceWindow="fri:09:30-fri:10:30") == OVERLAP
    assert _group(world) == before
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", SnapshotWindow="07:00-08:00")
    assert _group(world)["SnapshotWindow"] == "07:00-08:00"


def test_modify_of_other_settings_does_not_judge_old_windows(world: World) -> None:
    """Records whose defaults overlapped (chosen before the defaults avoided each other) stay
    modifiable: only a request that names a window is judged."""
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()

    def old_defaults(rec: CacheCluster) -> None:
        rec.spec.maintenance_window, rec.spec.snapshot_window = "wed:05:00-wed:06:00", "05:00-06:00"

    store = world.service.store
    rec = store.records(CacheCluster)[0]
    store.update(rec.key, CacheCluster, old_defaults)
    world.call("ModifyCacheCluster", CacheClusterId="web", SnapshotRetentionLimit=3)
    assert _cluster(world)["SnapshotRetentionLimit"] == 3
    assert _refused(world, "ModifyCacheCluster", CacheClusterId="web", SnapshotWindow="05:30-06:30") == OVERLAP
