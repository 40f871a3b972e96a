"""Issue 14, points 6 and 7: every API answer shows AWS's release of the engine line asked for
(what runs is said in an event), and a planned change reads as AWS writes one, never as the
recovery of a failed node."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
MEMCACHED = {"Engine": "memcached", "CacheNodeType": "cache.t3.micro"}
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}
WINDOW = "thu:13:00-thu:14:00"  # the fake clock starts Thursday 2026-01-01 12:00 UTC
SCALED = "Succeeded applying modification to cache node type to cache.t3.small."


def _cluster(world: World, cluster_id: str) -> dict[str, Any]:
    return world.call("DescribeCacheClusters", CacheClusterId=cluster_id,
                      ShowCacheNodeInfo=True)["CacheClusters"][0]


def _into_the_window(world: World) -> None:
    world.clock.advance(3600 + 60)
    world.service.controller.enqueue_all()
    world.settle()


def _group(world: World, clusters: int = 2, **extra: Any) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=clusters,
               AutomaticFailoverEnabled=True, **GROUP, **extra)
    world.settle_until(lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="rg")[
        "ReplicationGroups"][0]["Status"] == "available")


def _rg_events(world: World) -> list[str]:
    return [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group",
                                             SourceIdentifier="rg")["Events"]]


@pytest.mark.parametrize(("engine", "asked", "shown"), [
    (REDIS, "7.1", "7.1.0"), (REDIS, "7.0", "7.0.7"), (REDIS, "6.x", "6.2.6"), (REDIS, "5.0.6", "5.0.6"),
    (MEMCACHED, "1.6.22", "1.6.22"),
])
def test_aws_release_of_the_line_from_the_create_response_on(world: World, engine: dict[str, str], asked: str,
                                                             shown: str) -> None:
    created = world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion=asked, **engine)["CacheCluster"]
    assert created["EngineVersion"] == shown
    world.settle()
    cluster = _cluster(world, "c")
    assert cluster["CacheClusterStatus"] == "available" and cluster["EngineVersion"] == shown
    # What really runs (the fake runtime has redis 7.0.15 / 6.2.14, memcached 1.6.18) is said once.
    binary = world.runtime.config_of("123456789012-us-east-1-c-0001").version
    engine_name = engine["Engine"]
    said = [e for e in world.events("c") if e.startswith(f"Engine version {shown} ")]
    assert len(said) == 1 and f"{engine_name} {binary}" in said[0], world.events("c")


def test_the_same_line_asked_again_changes_nothing_and_an_older_one_is_refused(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion="7.1", **REDIS)
    world.settle()
    before = len(world.events("c"))
    out = world.call("ModifyCacheCluster", CacheClusterId="c", EngineVersion="7.1.0", ApplyImmediately=True)
    assert out["CacheCluster"]["CacheClusterStatus"] == "available"
    out = world.call("ModifyCacheCluster", CacheClusterId="c", EngineVersion="7.1")
    assert out["CacheCluster"]["PendingModifiedValues"] == {}
    world.settle()
    assert len(world.events("c")) == before  # no restart
    with pytest.raises(ApiError) as err:
        world.call("ModifyCacheCluster", CacheClusterId="c", EngineVersion="7.0")
    assert (err.value.code, err.value.message) == ("InvalidParameterCombination",
                                                   "Cannot modify redis from 7.1.0 to 7.0.7")


def test_pending_upgrade_snapshot_and_members_show_the_release(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion="6.2", **REDIS)
    world.settle()
    out = world.call("ModifyCacheCluster", CacheClusterId="c", EngineVersion="7.0")
    assert out["CacheCluster"]["PendingModifiedValues"] == {"EngineVersion": "7.0.7"}
    world.call("CreateSnapshot", CacheClusterId="c", SnapshotName="s")
    world.settle()
    assert world.call("DescribeSnapshots", SnapshotName="s")["Snapshots"][0]["EngineVersion"] == "6.2.6"
    _group(world, EngineVersion="7.1")
    members = world.call("DescribeCacheClusters")["CacheClusters"]
    assert {m["EngineVersion"] for m in members if m.get("ReplicationGroupId") == "rg"} == {"7.1.0"}


def test_cluster_node_type_change_in_the_window_reads_as_a_modification(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="c", PreferredMaintenanceWindow=WINDOW, **REDIS)
    world.settle()
    world.call("ModifyCacheCluster", CacheClusterId="c", CacheNodeType="cache.t3.small")
    _into_the_window(world)
    assert _cluster(world, "c")["CacheNodeType"] == "cache.t3.small"
    events = world.events("c")
    assert events[-3:] == ["Cache node 0001 shutdown", "Cache node 0001 restarted",
                           "Succeeded applying modification to cache node type to cache.t3.small."]
    assert not [e for e in events if "ecover" in e], events


def test_group_scaling_then_upgrade_read_as_aws_writes_them(world: World) -> None:
    _group(world, EngineVersion="6.2", PreferredMaintenanceWindow=WINDOW)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", CacheNodeType="cache.t3.small")
    _into_the_window(world)
    world.settle_until(lambda: _rg_events(world)[-1:] == [SCALED])
    for member in ("rg-001", "rg-002"):
        events = world.events(member)
        assert events[-2:] == ["Cache node 0001 shutdown", "Cache node 0001 restarted"], events
        assert not [e for e in events if "ecover" in e], events
    assert _rg_events(world).count(SCALED) == 1
    # An engine upgrade (6.2.14 -> 7.0.15 here): each member patched, as AWS writes it.
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", EngineVersion="7.0", ApplyImmediately=True)
    world.settle_until(lambda: all(world.events(m)[-1:] == ["Cache cluster patched"] for m in ("rg-001", "rg-002")))
    for member in ("rg-001", "rg-002"):
        events = world.events(member)
        assert events[-4:] == ["Cache node 0001 shutdown", "Engine version 7.0.7 runs as redis 7.0.15 on this machine",
                               "Cache node 0001 restarted", "Cache cluster patched"], events
        assert not [e for e in events if "ecover" in e], events
        assert _cluster(world, member)["EngineVersion"] == "7.0.7"


def test_a_member_reboot_is_no_recovery(world: World) -> None:
    _group(world)
    world.call("RebootCacheCluster", CacheClusterId="rg-002", CacheNodeIdsToReboot=["0001"])
    world.settle_until(lambda: world.events("rg-002")[-1:] == ["Cache node 0001 restarted"])
    assert world.events("rg-002")[-2:] == ["Cache node 0001 shutdown", "Cache node 0001 restarted"]
    assert not [e for e in world.events("rg-002") if "ecover" in e]


def test_a_crash_still_reads_as_a_recovery(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="c", **REDIS)
    world.settle()
    world.runtime.crash("123456789012-us-east-1-c-0001")
    world.settle_until(lambda: world.events("c")[-1:] == ["Finished recovery for cache nodes 0001"])
    assert world.events("c")[-2:] == ["Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"]
