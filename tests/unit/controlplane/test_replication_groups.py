"""Replication groups and failover on the fake runtime and fake clock: deterministic, fast."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.state.records import FailoverState, ReplicationGroup
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

NODE = "123456789012-us-east-1-{}-0001"
BASIC = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}


def _group(world: World, group_id: str = "rg") -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId=group_id)["ReplicationGroups"][0]


def _roles(world: World, group_id: str = "rg") -> dict[str, str]:
    return {m["CacheClusterId"]: m["CurrentRole"] for m in _group(world, group_id)["NodeGroups"][0]["NodeGroupMembers"]}


def _make(world: World, clusters: int = 3, failover: bool = True, **extra: Any) -> dict[str, Any]:
    out = world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=clusters,
                     AutomaticFailoverEnabled=failover, **BASIC, **extra)["ReplicationGroup"]
    # Until it is no longer creating: one settle left it `creating` on a loaded CI machine (a pass
    # used up its real-time wait for a fake node, and its requeue waits on the fake clock).
    world.settle_until(lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="rg")[
        "ReplicationGroups"][0]["Status"] != "creating")
    return out


def _rg_events(world: World) -> list[str]:
    return [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group",
                                             SourceIdentifier="rg")["Events"]]


def _cc_events(world: World, cluster: str) -> list[str]:
    return world.events(cluster)


def test_create_replicates_and_places_the_endpoints(world: World) -> None:
    created = world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=3,
                         AutomaticFailoverEnabled=True, MultiAZEnabled=True, **BASIC)["ReplicationGroup"]
    assert created["Status"] == "creating" and created["AutomaticFailover"] == "enabling"
    assert created["MemberClusters"] == ["rg-001", "rg-002", "rg-003"]
    world.settle()
    group = _group(world)
    assert group["Status"] == "available" and group["AutomaticFailover"] == "enabled" and group["MultiAZ"] == "enabled"
    assert _roles(world) == {"rg-001": "primary", "rg-002": "replica", "rg-003": "replica"}
    ng = group["NodeGroups"][0]
    primary_host, reader_host = ng["PrimaryEndpoint"]["Address"], ng["ReaderEndpoint"]["Address"]
    members = {m["CacheClusterId"]: m["ReadEndpoint"]["Address"] for m in ng["NodeGroupMembers"]}
    assert len({primary_host, reader_host, *members.values()}) == 5  # every address its own
    rt = world.runtime
    assert rt.listeners(primary_host) == [NODE.format("rg-001")]
    assert rt.listeners(reader_host) in ([NODE.format("rg-002")], [NODE.format("rg-003")])
    assert rt.primary_of[NODE.format("rg-002")] == (members["rg-001"], 6379)
    assert rt.primary_of[NODE.format("rg-001")] is None
    clusters = world.call("DescribeCacheClusters")["CacheClusters"]
    assert {c["CacheClusterId"]: c["ReplicationGroupId"] for c in clusters} == {
        "rg-001": "rg", "rg-002": "rg", "rg-003": "rg"}
    assert all(c["CacheClusterStatus"] == "available" for c in clusters)
    assert "Replication group rg created" in _rg_events(world)


def test_primary_crash_fails_over_to_the_most_advanced_replica(world: World) -> None:
    _make(world)
    primary_host = _group(world)["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    world.runtime.set_offset(NODE.format("rg-002"), 100)
    world.runtime.set_offset(NODE.format("rg-003"), 250)
    world.runtime.crash(NODE.format("rg-001"))  # the exit reaches the loop at once
    world.settle()
    assert _roles(world) == {"rg-001": "replica", "rg-002": "replica", "rg-003": "primary"}
    rt = world.runtime
    assert rt.listeners(primary_host) == [NODE.format("rg-003")]
    new_primary = _group(world)["NodeGroups"][0]["NodeGroupMembers"][2]["ReadEndpoint"]["Address"]
    assert rt.primary_of[NODE.format("rg-002")] == (new_primary, 6379)
    assert rt.primary_of[NODE.format("rg-001")] == (new_primary, 6379)  # replaced as a replica
    assert NODE.format("rg-001") in rt.calls_of("remove")  # ... starting empty
    text = "Failover from primary node rg-001 to replica node rg-003 completed"
    assert text in _rg_events(world)
    assert _cc_events(world, "rg-001")[-3:] == [text, "Recovering cache nodes 0001",
                                                "Finished recovery for cache nodes 0001"]
    assert _group(world)["Status"] == "available"


def test_frozen_primary_is_down_after_down_after_and_fenced(world: World) -> None:
    _make(world)
    health = world.service.health
    world.runtime.hang(NODE.format("rg-001"))
    health.probe_all()
    world.clock.advance(0.5)
    health.probe_all()
    world.settle()
    assert _roles(world)["rg-001"] == "primary"  # 0.5 s < down_after: not yet
    world.clock.advance(0.6)
    health.probe_all()  # down: the owner is enqueued
    world.settle()
    assert _roles(world)["rg-002"] == "primary"
    assert NODE.format("rg-001") in world.runtime.calls_of("kill")  # fenced before the promotion


def test_a_primary_that_recovers_before_down_after_does_not_fail_over(world: World) -> None:
    _make(world)
    health = world.service.health
    for _ in range(5):  # flapping: down 0.4 s, up again, repeatedly
        world.runtime.hang(NODE.format("rg-001"))
        world.clock.advance(0.4)
        health.probe_all()
        world.runtime.unhang(NODE.format("rg-001"))
        world.clock.advance(0.1)
        health.probe_all()
        world.settle()
    assert _roles(world)["rg-001"] == "primary"
    assert not any("Failover" in e for e in _rg_events(world))


def test_tilt_suspends_failover_until_nodes_are_seen_again(world: World) -> None:
    _make(world)
    health = world.service.health
    world.runtime.hang(NODE.format("rg-001"))
    world.clock.advance(5)  # the monitor stalled (laptop sleep): its observations are stale
    health.enter_tilt()
    assert not health.is_down(NODE.format("rg-001"))
    health.probe_all()  # every node seen afresh: TILT is over
    assert not health.tilt
    world.clock.advance(1.1)
    health.probe_all()
    world.settle()
    assert _roles(world)["rg-002"] == "primary"


def test_without_automatic_failover_the_primary_restarts_in_place(world: World) -> None:
    _make(world, clusters=2, failover=False)
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    assert _roles(world) == {"rg-001": "primary", "rg-002": "replica"}
    assert world.runtime.calls_of("start").count(NODE.format("rg-001")) == 2
    assert NODE.format("rg-001") not in world.runtime.calls_of("remove")  # its own data
    assert _cc_events(world, "rg-001")[-2:] == ["Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"]
    assert not any("Failover" in e for e in _rg_events(world))


def test_a_replica_that_refuses_promotion_is_skipped(world: World) -> None:
    _make(world)
    world.runtime.set_offset(NODE.format("rg-002"), 500)
    world.runtime.refuse_commands(NODE.format("rg-002"))
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    world.runtime.refuse_commands(NODE.format("rg-002"), False)
    world.settle()
    assert _roles(world)["rg-003"] == "primary"


def test_no_eligible_replica_means_restart_in_place(world: World) -> None:
    _make(world, clusters=2)
    world.runtime.hang(NODE.format("rg-002"))  # the only replica does not answer either
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    assert any("aborted" in e for e in _rg_events(world))
    assert world.runtime.calls_of("start").count(NODE.format("rg-001")) == 2
    assert _roles(world)["rg-001"] == "primary"


def test_restart_in_the_middle_of_a_failover_resumes_it(world: World) -> None:
    _make(world)
    world.runtime.kill(NODE.format("rg-001"))  # fenced, as the crashed control plane left it
    key = world.service.store.records(ReplicationGroup)[0].key

    def mid_failover(r: ReplicationGroup) -> None:
        r.status.failover = FailoverState(step="promote", reason="automatic", old_primary="rg-001",
                                          candidate="rg-002", started_at=world.clock.now())

    world.service.store.update(key, ReplicationGroup, mid_failover)
    again = world.restart()
    again.service.controller.enqueue_all()
    again.settle()
    assert _roles(again) == {"rg-001": "replica", "rg-002": "primary", "rg-003": "replica"}
    assert _group(again)["Status"] == "available"


def test_test_failover(world: World) -> None:
    _make(world)
    out = world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")["ReplicationGroup"]
    assert out["Status"] == "available"
    assert _group(world)["Status"] == "modifying"
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    assert err.value.code == "InvalidReplicationGroupState"
    world.settle()
    assert _roles(world)["rg-001"] == "replica"
    events = _rg_events(world)
    assert events.index("Test Failover API called for node group 0001") < events.index(
        "Failover from primary node rg-001 to replica node rg-002 completed")
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0002")
    assert (err.value.code, err.value.status) == ("NodeGroupNotFoundFault", 404)


def test_test_failover_limits(world: World) -> None:
    _make(world)
    for _ in range(15):  # AWS allows 15 in a rolling 24 hours
        world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
        world.settle()
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    assert err.value.code == "APICallRateForCustomerExceeded"
    world.clock.advance(24 * 3600)
    world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")


def test_test_failover_needs_automatic_failover(world: World) -> None:
    _make(world, clusters=2, failover=False)
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    assert err.value.code == "TestFailoverNotAvailableFault"


@pytest.mark.parametrize(("params", "code", "message"), [
    ({"NumCacheClusters": 1, "AutomaticFailoverEnabled": True}, "InvalidParameterCombination",
     "When using automatic failover, there must be at least 2 cache clusters in the replication group."),
    ({"ReplicasPerNodeGroup": 0, "AutomaticFailoverEnabled": True}, "InvalidParameterValue",
     "Must have at least 1 replica when cluster mode is disabled with auto failover enabled."),
    ({"NumCacheClusters": 2, "MultiAZEnabled": True}, "InvalidParameterCombination", None),
    ({"NumCacheClusters": 7}, "InvalidParameterValue", None),
    ({"NumNodeGroups": 2, "ClusterMode": "disabled"}, "InvalidParameterCombination", None),
    ({"NumCacheClusters": 2, "PreferredCacheClusterAZs": ["us-east-1a"]}, "InvalidParameterCombination", None),
])
def test_create_validation(world: World, params: dict[str, Any], code: str, message: str | None) -> None:
    with pytest.raises(ApiError) as err:
        world.call("CreateReplicationGroup", ReplicationGroupId="rg", **BASIC, **params)
    assert err.value.code == code
    if message:
        assert err.value.message == message
    assert world.call("DescribeReplicationGroups")["ReplicationGroups"] == []
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_replicas_per_node_group_zero_makes_no_replica(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicasPerNodeGroup=0, **BASIC)
    world.settle()
    assert _group(world)["MemberClusters"] == ["rg-001"]
    # With no replica the reader endpoint is held by the primary.
    ng = _group(world)["NodeGroups"][0]
    assert world.runtime.listeners(ng["ReaderEndpoint"]["Address"]) == [NODE.format("rg-001")]


def test_replica_count_changes_and_joining_clusters(world: World) -> None:
    _make(world, clusters=2)
    world.call("IncreaseReplicaCount", ReplicationGroupId="rg", NewReplicaCount=3, ApplyImmediately=True)
    world.settle()
    assert _group(world)["MemberClusters"] == ["rg-001", "rg-002", "rg-003", "rg-004"]
    world.call("CreateCacheCluster", CacheClusterId="extra", ReplicationGroupId="rg")
    world.settle()
    assert _roles(world)["extra"] == "replica"
    world.call("DecreaseReplicaCount", ReplicationGroupId="rg", ReplicasToRemove=["rg-002"], ApplyImmediately=True)
    world.settle()
    assert "rg-002" not in _group(world)["MemberClusters"]
    world.call("DeleteCacheCluster", CacheClusterId="extra")
    world.settle()
    assert _group(world)["MemberClusters"] == ["rg-001", "rg-003", "rg-004"]
    with pytest.raises(ApiError) as err:
        world.call("DeleteCacheCluster", CacheClusterId="rg-001")
    assert err.value.code == "InvalidCacheClusterState"
    with pytest.raises(ApiError) as err:
        world.call("DecreaseReplicaCount", ReplicationGroupId="rg", NewReplicaCount=0, ApplyImmediately=True)
    assert err.value.message == "Must have at least 1 replica when cluster mode is disabled with auto failover enabled."


def test_switchover_with_primary_cluster_id(world: World) -> None:
    _make(world, clusters=3, failover=False)
    primary_host = _group(world)["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    with pytest.raises(ApiError):
        world.call("ModifyReplicationGroup", ReplicationGroupId="rg", PrimaryClusterId="nope")
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", PrimaryClusterId="rg-003", ApplyImmediately=True)
    world.settle()
    assert _roles(world) == {"rg-001": "replica", "rg-002": "replica", "rg-003": "primary"}
    assert world.runtime.listeners(primary_host) == [NODE.format("rg-003")]
    assert NODE.format("rg-001") not in world.runtime.calls_of("kill")  # planned: nobody was killed
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", AutomaticFailoverEnabled=True, ApplyImmediately=True)
    world.settle()
    with pytest.raises(ApiError) as err:
        world.call("ModifyReplicationGroup", ReplicationGroupId="rg", PrimaryClusterId="rg-001")
    assert err.value.code == "InvalidParameterCombination"


def test_delete_with_retain_primary_cluster(world: World) -> None:
    _make(world)
    world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    world.settle()
    out = world.call("DeleteReplicationGroup", ReplicationGroupId="rg", RetainPrimaryCluster=True)
    assert out["ReplicationGroup"]["Status"] == "deleting"
    world.settle()
    with pytest.raises(ApiError) as err:
        world.call("DescribeReplicationGroups", ReplicationGroupId="rg")
    assert err.value.code == "ReplicationGroupNotFoundFault"
    (kept,) = world.call("DescribeCacheClusters", ShowCacheNodeInfo=True)["CacheClusters"]
    assert kept["CacheClusterId"] == "rg-002" and "ReplicationGroupId" not in kept
    assert kept["CacheClusterStatus"] == "available"
    assert world.runtime.addresses[NODE.format("rg-002")] == [kept["CacheNodes"][0]["Endpoint"]["Address"]]


def test_existing_cluster_becomes_the_primary(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="solo", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d",
               PrimaryClusterId="solo", NumCacheClusters=2)
    world.settle()
    assert _roles(world) == {"solo": "primary", "rg-001": "replica"}
    assert world.runtime.calls_of("start").count(NODE.format("solo")) == 1  # the same node, kept


def test_member_reboot_does_not_fail_over(world: World) -> None:
    _make(world)
    world.call("RebootCacheCluster", CacheClusterId="rg-001", CacheNodeIdsToReboot=["0001"])
    world.settle()
    assert _roles(world)["rg-001"] == "primary"
    assert _cc_events(world, "rg-001")[-1] == "Cache node 0001 restarted"


def test_node_type_change_rolls_replicas_first_then_switches_over(world: World) -> None:
    _make(world)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", CacheNodeType="cache.t3.small")
    members = world.call("DescribeCacheClusters")["CacheClusters"]
    assert all(m["PendingModifiedValues"] == {"CacheNodeType": "cache.t3.small"} for m in members)
    world.settle()
    assert world.runtime.config_of(NODE.format("rg-002")).memory_mb == 512  # not yet: pending

    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", CacheNodeType="cache.t3.small",
               ApplyImmediately=True)
    world.settle()
    for member in ("rg-001", "rg-002", "rg-003"):
        assert world.runtime.config_of(NODE.format(member)).memory_mb == int(1.37 * 1024)
    assert NODE.format("rg-001") not in world.runtime.calls_of("kill")  # planned, not a failover
    stops = world.runtime.calls_of("stop")
    assert stops.index(NODE.format("rg-002")) < stops.index(NODE.format("rg-001"))  # replicas first
    assert _roles(world)["rg-001"] == "replica"  # the primary handed over before its restart
    group = _group(world)
    assert group["CacheNodeType"] == "cache.t3.small" and group["Status"] == "available"
    assert {m["CacheNodeType"] for m in world.call("DescribeCacheClusters")["CacheClusters"]} == {"cache.t3.small"}


def test_ports_addressing_uses_forwarders_that_follow_the_failover(tmp_path: Any) -> None:
    world = World(tmp_path, addressing="ports")
    try:
        _make(world)
        ng = _group(world)["NodeGroups"][0]
        primary = ng["PrimaryEndpoint"]
        assert primary["Address"] == "127.0.0.1" and 31000 <= primary["Port"] <= 31099
        members = {m["CacheClusterId"]: (m["ReadEndpoint"]["Address"], m["ReadEndpoint"]["Port"])
                   for m in ng["NodeGroupMembers"]}
        assert len(set(members.values())) == 3 and {h for h, _ in members.values()} == {"127.0.0.1"}
        forwarder = "123456789012-us-east-1-rg-primary"
        assert world.hub.endpoints[forwarder] == (primary["Address"], primary["Port"])
        assert world.hub.targets[forwarder] == members["rg-001"]
        assert world.runtime.addresses[NODE.format("rg-001")] == ["127.0.0.1"]  # no floating address
        world.runtime.crash(NODE.format("rg-001"))
        world.settle()
        assert world.hub.targets[forwarder] == members["rg-002"]
        assert world.hub.targets["123456789012-us-east-1-rg-reader"] in (members["rg-001"], members["rg-003"])
        world.call("DeleteReplicationGroup", ReplicationGroupId="rg")
        world.settle()
        assert forwarder not in world.hub.endpoints
    finally:
        world.service.store.close()


def test_a_replica_is_ready_only_when_the_stream_reaches_it(world: World) -> None:
    """Its link being "up" is not enough: redis can hold the stream back for a second after the
    first sync, and a failover then would lose writes the client saw acknowledged."""
    world.runtime.set_offset(NODE.format("rg-002"), -1)  # link up, stream not received
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2, **BASIC)
    world.settle()
    assert _group(world)["Status"] == "creating"
    world.runtime.set_offset(NODE.format("rg-002"), 10**6)
    world.clock.advance(5)
    world.service.controller.enqueue_all()
    world.settle()
    assert _group(world)["Status"] == "available"


def test_late_probe_rounds_do_not_make_healthy_nodes_down(world: World) -> None:
    _make(world)
    health = world.service.health
    health.probe_all()
    world.clock.advance(1.5)  # no probe round for longer than down_after: nothing is known
    world.service.controller.enqueue_all()
    world.settle()
    assert _roles(world)["rg-001"] == "primary"
    assert world.runtime.calls_of("kill") == []


def test_a_candidate_that_dies_after_promotion_sends_the_failover_back_to_select(world: World) -> None:
    _make(world)
    world.runtime.set_offset(NODE.format("rg-002"), 500)  # rg-002 is chosen first
    real_set_addresses = world.runtime.set_addresses

    def dies_when_repointed(name: str, extra: Any) -> None:
        if name == NODE.format("rg-002") and extra:
            world.runtime.set_exit_listener(lambda n: None)
            world.runtime.crash(name)  # dead between promotion and repoint
            world.runtime.set_exit_listener(world.service._node_exited)
        real_set_addresses(name, extra)

    world.runtime.set_addresses = dies_when_repointed  # type: ignore[method-assign]
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    world.runtime.set_addresses = real_set_addresses  # type: ignore[method-assign]
    world.service.controller.enqueue_all()
    world.settle()
    assert _roles(world)["rg-003"] == "primary"
    assert _group(world)["Status"] == "available"


def test_test_failover_without_a_promotable_replica_leaves_the_primary_alone(world: World) -> None:
    _make(world, clusters=2)
    world.runtime.refuse_commands(NODE.format("rg-002"))
    world.runtime.hang(NODE.format("rg-002"))  # answers no probe: not promotable
    world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    world.settle()
    assert NODE.format("rg-001") not in world.runtime.calls_of("kill")
    assert any("aborted" in e for e in _rg_events(world))


def test_test_failover_needs_every_member_available(world: World) -> None:
    _make(world)
    world.call("RebootCacheCluster", CacheClusterId="rg-002", CacheNodeIdsToReboot=["0001"])
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    assert err.value.code == "InvalidCacheClusterState"


def test_switchover_hands_over_without_killing_and_disconnects_clients(world: World) -> None:
    _make(world, failover=False)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", PrimaryClusterId="rg-002", ApplyImmediately=True)
    world.settle()
    assert world.runtime.calls_of("hand_over") == [NODE.format("rg-001")]
    assert world.runtime.calls_of("disconnect_clients") == [NODE.format("rg-001")]
    assert world.runtime.calls_of("kill") == []
    assert _roles(world) == {"rg-001": "replica", "rg-002": "primary", "rg-003": "replica"}


def test_endpoints_move_while_a_zone_keeps_a_member_down(world: World) -> None:
    _make(world)  # rg-001 in us-east-1a, rg-002 in b, rg-003 in c
    ng = _group(world)["NodeGroups"][0]
    reader = ng["ReaderEndpoint"]["Address"]
    holder = world.runtime.listeners(reader)[0]
    zone = {NODE.format("rg-002"): "us-east-1b", NODE.format("rg-003"): "us-east-1c"}[holder]
    world.service.faults.interrupt_az(zone, 60)
    world.settle()
    assert world.runtime.listeners(reader) and world.runtime.listeners(reader) != [holder]


def test_repeated_failures_are_reported_once_and_failed_clusters_can_be_deleted(world: World) -> None:
    world.runtime.fail_next_starts(100, temporary=False)
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    for _ in range(3):
        world.service.controller.enqueue_all()
        world.settle()
    assert sum(e.startswith("Failed to create") for e in world.events("web")) == 1
    world.call("DeleteCacheCluster", CacheClusterId="web")
    world.settle()
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_member_node_type_is_changed_through_the_group(world: World) -> None:
    _make(world)
    with pytest.raises(ApiError) as err:
        world.call("ModifyCacheCluster", CacheClusterId="rg-002", CacheNodeType="cache.m5.large",
                   ApplyImmediately=True)
    assert err.value.code == "InvalidParameterCombination"


def test_apply_immediately_also_applies_what_was_pending(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro")
    world.settle()
    world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=3)  # pending
    world.call("ModifyCacheCluster", CacheClusterId="mc", AutoMinorVersionUpgrade=False, ApplyImmediately=True)
    world.settle()
    cluster = world.call("DescribeCacheClusters", CacheClusterId="mc")["CacheClusters"][0]
    assert cluster["NumCacheNodes"] == 3 and cluster["PendingModifiedValues"] == {}


def test_group_tags_reach_its_members(world: World) -> None:
    arn = world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2,
                     Tags=[{"Key": "team", "Value": "a"}], **BASIC)["ReplicationGroup"]["ARN"]
    with pytest.raises(ApiError) as err:
        world.call("AddTagsToResource", ResourceName=arn, Tags=[{"Key": "x", "Value": "1"}])
    assert err.value.message == "Cluster not in available state to perform tagging operations."
    world.settle()
    world.call("AddTagsToResource", ResourceName=arn, Tags=[{"Key": "x", "Value": "1"}])
    member_arn = "arn:aws:elasticache:us-east-1:123456789012:cluster:rg-002"
    assert world.call("ListTagsForResource", ResourceName=member_arn)["TagList"] == [
        {"Key": "team", "Value": "a"}, {"Key": "x", "Value": "1"}]


def test_a_modify_racing_another_change_is_refused_not_lost(world: World) -> None:
    from controlplane.handlers import cache_clusters as handlers
    from controlplane.handlers.context import RequestContext
    from controlplane.state.records import CacheCluster

    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    store = world.service.store
    real_update = store.update

    def racing_update(key: Any, model: Any, change: Any) -> Any:
        # Another request deletes the cluster between this handler's read and its write.
        real_update(key, model, lambda r: setattr(r.spec, "delete_requested", True))
        return real_update(key, model, change)

    store.update = racing_update  # type: ignore[method-assign]
    ctx = RequestContext("123456789012", "us-east-1", "r", world.service.query.services)
    with pytest.raises(handlers.ServiceError):
        handlers.modify_cache_cluster(ctx, {"CacheClusterId": "web", "SnapshotRetentionLimit": 3})
    store.update = real_update  # type: ignore[method-assign]
    rec = store.records(CacheCluster)[0]
    assert rec.spec.delete_requested and rec.spec.snapshot_retention_limit == 0


def test_a_dead_forwarder_is_added_again_with_its_target(tmp_path: Any) -> None:
    world = World(tmp_path, addressing="ports")
    try:
        _make(world)
        ng = _group(world)["NodeGroups"][0]
        members = {m["CacheClusterId"]: (m["ReadEndpoint"]["Address"], m["ReadEndpoint"]["Port"])
                   for m in ng["NodeGroupMembers"]}
        primary = "123456789012-us-east-1-rg-primary"
        world.hub.lose(primary)  # its HAProxy was killed from outside
        world.service.controller.enqueue(world.service.store.records(ReplicationGroup)[0].key)
        world.settle()
        assert world.hub.targets[primary] == members["rg-001"]  # back, pointing where it should
        # Re-pointing fails once during a failover (the proxy died at that moment): retried.
        world.hub.fail_set_target = 1
        world.runtime.crash(NODE.format("rg-001"))
        world.settle()
        world.clock.advance(1.0)
        world.settle()
        assert world.hub.targets[primary] == members["rg-002"]
    finally:
        world.service.store.close()


def test_standalone_nodes_are_probed_less_often_but_still_judged(world: World) -> None:
    _make(world)
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
               NumCacheNodes=1)
    world.settle()
    health = world.service.health
    standalone, member = "123456789012-us-east-1-web-0001", NODE.format("rg-002")
    world.runtime.calls.clear()
    for _ in range(10):  # two seconds of rounds every HEALTH_INTERVAL (0.2 s)
        health.probe_all()
        world.clock.advance(0.2)
    probes = world.runtime.calls_of("probe")
    assert probes.count(member) == 10  # a failover hangs on these
    assert 2 <= probes.count(standalone) <= 3  # every STANDALONE_HEALTH_INTERVAL (1 s)
    # One missed probe (a busy node) is not a second of silence, though its last answer is 1 s old.
    world.runtime.hang(standalone)
    world.runtime.calls.clear()
    for _ in range(6):  # until its next (slow) probe has failed once
        health.probe_all()
        if world.runtime.calls_of("probe").count(standalone):
            break
        world.clock.advance(0.2)
    assert world.runtime.calls_of("probe").count(standalone) == 1
    assert not health.is_down(standalone)
    world.clock.advance(0.2)
    health.probe_all()
    assert world.runtime.calls_of("probe").count(standalone) == 2  # failing: probed every round
    world.runtime.unhang(standalone)
    world.clock.advance(0.2)
    health.probe_all()
    assert not health.is_down(standalone)
    world.runtime.hang(standalone)
    for _ in range(15):
        health.probe_all()
        world.clock.advance(0.2)
    assert health.is_down(standalone)  # a frozen standalone node is still found
