"""Per-shard operations of a cluster-mode group on the fake runtime: replicas added and removed per
node group, the node type / engine version roll shard by shard, TestFailover's rules."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.state.records import CacheCluster
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_cluster_mode import NODE, _group, _make, _roles

NOW = {"ApplyImmediately": True}


def _shards(world: World) -> dict[str, list[str]]:
    return {g["NodeGroupId"]: sorted(m["CacheClusterId"] for m in g["NodeGroupMembers"])
            for g in _group(world)["NodeGroups"]}


def _master_of(world: World, member: str) -> str | None:
    """The member the node follows in the cluster, by the cluster's own view."""
    view = world.runtime.cluster_view(NODE.format(member))
    owner = {world.runtime.cluster_id_of(NODE.format(m)): m for m in _roles(world)}
    return owner.get(view.me.master_id)


def _available(world: World) -> bool:
    return _group(world)["Status"] == "available"


def test_increase_per_shard_adds_replicas_that_follow_their_primary(world: World) -> None:
    _make(world, shards=3, replicas=1)
    answer = world.call("IncreaseReplicaCount", ReplicationGroupId="cl", **NOW, ReplicaConfiguration=[
        {"NodeGroupId": "0002", "NewReplicaCount": 3,
         "PreferredAvailabilityZones": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]}])
    assert answer["ReplicationGroup"]["Status"] == "modifying"
    world.settle_until(lambda: _available(world))
    assert _shards(world)["0002"] == ["cl-0002-001", "cl-0002-002", "cl-0002-003", "cl-0002-004"]
    assert _shards(world)["0001"] == ["cl-0001-001", "cl-0001-002"]
    assert _master_of(world, "cl-0002-004") == "cl-0002-001" and _master_of(world, "cl-0002-003") == "cl-0002-001"
    clusters = {c["CacheClusterId"]: c for c in world.call("DescribeCacheClusters")["CacheClusters"]}
    assert clusters["cl-0002-004"]["PreferredAvailabilityZone"] == "us-east-1d"
    assert clusters["cl-0002-004"]["CacheClusterStatus"] == "available"
    view = world.runtime.cluster_view(NODE.format("cl-0001-001"))
    assert len(view.nodes) == 8 and view.state_ok
    # NewReplicaCount: every shard.
    world.call("IncreaseReplicaCount", ReplicationGroupId="cl", NewReplicaCount=4, **NOW)
    world.settle_until(lambda: _available(world))
    assert {s: len(m) for s, m in _shards(world).items()} == {"0001": 5, "0002": 5, "0003": 5}


def test_decrease_removes_replicas_forgotten_by_every_node(world: World) -> None:
    _make(world, shards=2, replicas=2)
    removed = NODE.format("cl-0001-002")
    removed_id = world.runtime.cluster_id_of(removed)
    world.call("DecreaseReplicaCount", ReplicationGroupId="cl", ReplicasToRemove=["cl-0001-002"], **NOW)
    world.settle_until(lambda: _available(world))
    assert _shards(world) == {"0001": ["cl-0001-001", "cl-0001-003"], "0002": ["cl-0002-001", "cl-0002-002",
                                                                              "cl-0002-003"]}
    assert world.runtime.inspect(removed) is None
    for member in _roles(world):
        view = world.runtime.cluster_view(NODE.format(member))
        assert view.node(removed_id or "") is None and len(view.nodes) == 5 and view.state_ok
    # NewReplicaCount 0 on one shard: the newest replicas go; a shard without replicas is allowed.
    world.call("DecreaseReplicaCount", ReplicationGroupId="cl", **NOW,
               ReplicaConfiguration=[{"NodeGroupId": "0002", "NewReplicaCount": 0}])
    world.settle_until(lambda: _available(world))
    assert _shards(world)["0002"] == ["cl-0002-001"]
    assert "Cache cluster deleted" in [e["Message"] for e in world.call(
        "DescribeEvents", SourceType="cache-cluster", SourceIdentifier="cl-0002-003")["Events"]]


@pytest.mark.parametrize(("op", "params", "code"), [
    ("IncreaseReplicaCount", {"NewReplicaCount": 6}, "InvalidParameterValue"),
    ("IncreaseReplicaCount", {"NewReplicaCount": 1}, "InvalidParameterValue"),
    ("IncreaseReplicaCount", {"ReplicaConfiguration": [{"NodeGroupId": "0009", "NewReplicaCount": 2}]},
     "NodeGroupNotFoundFault"),
    ("IncreaseReplicaCount", {"ReplicaConfiguration": [{"NodeGroupId": "0001", "NewReplicaCount": 2},
                                                       {"NodeGroupId": "0001", "NewReplicaCount": 3}]},
     "InvalidParameterValue"),
    ("IncreaseReplicaCount", {"ReplicaConfiguration": [{"NodeGroupId": "0001", "NewReplicaCount": 2,
                                                        "PreferredAvailabilityZones": ["us-east-1a"]}]},
     "InvalidParameterCombination"),
    ("IncreaseReplicaCount", {"NewReplicaCount": 2,
                              "ReplicaConfiguration": [{"NodeGroupId": "0001", "NewReplicaCount": 2}]},
     "InvalidParameterCombination"),
    ("IncreaseReplicaCount", {"NewReplicaCount": 2, "ApplyImmediately": False}, "InvalidParameterValue"),
    ("DecreaseReplicaCount", {"NewReplicaCount": 1}, "InvalidParameterValue"),
    ("DecreaseReplicaCount", {"NewReplicaCount": -1}, "InvalidParameterValue"),
    ("DecreaseReplicaCount", {"ReplicasToRemove": ["cl-0001-001"]}, "InvalidParameterValue"),
    ("DecreaseReplicaCount", {"ReplicasToRemove": ["cl-0001-009"]}, "CacheClusterNotFound"),
    ("DecreaseReplicaCount", {"ReplicasToRemove": ["cl-0002-002"],
                              "ReplicaConfiguration": [{"NodeGroupId": "0001", "NewReplicaCount": 0}]},
     "InvalidParameterCombination"),
    ("DecreaseReplicaCount", {"ReplicasToRemove": ["cl-0001-002"],
                              "ReplicaConfiguration": [{"NodeGroupId": "0001", "NewReplicaCount": 1}]},
     "InvalidParameterValue"),
])
def test_replica_count_errors_change_nothing(world: World, op: str, params: dict[str, Any], code: str) -> None:
    _make(world, shards=2, replicas=1)
    before = _shards(world)
    with pytest.raises(ApiError) as err:
        world.call(op, ReplicationGroupId="cl", **{"ApplyImmediately": True, **params})
    assert err.value.code == code, err.value.message
    assert _shards(world) == before and _available(world)
    assert not any(c.spec.delete_requested for c in world.service.store.records(CacheCluster))


def test_multi_az_keeps_a_replica_per_shard(world: World) -> None:
    _make(world, shards=2, replicas=1, MultiAZEnabled=True)
    with pytest.raises(ApiError) as err:
        world.call("DecreaseReplicaCount", ReplicationGroupId="cl", NewReplicaCount=0, **NOW)
    assert err.value.code == "InvalidParameterValue"


def test_node_type_and_engine_version_changes_are_refused_for_now(world: World) -> None:
    _make(world, shards=2, replicas=1)
    for params in ({"CacheNodeType": "cache.m5.large"}, {"EngineVersion": "7.1"}):
        with pytest.raises(ApiError) as err:
            world.call("ModifyReplicationGroup", ReplicationGroupId="cl", **params, **NOW)
        assert err.value.code == "InvalidParameterCombination"
    assert _available(world)


def test_test_failover_rules_on_cluster_groups(world: World) -> None:
    _make(world, shards=2, replicas=0)
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="cl", NodeGroupId="0001")
    assert err.value.code == "TestFailoverNotAvailableFault"
    world.call("IncreaseReplicaCount", ReplicationGroupId="cl", NewReplicaCount=1, **NOW)
    world.settle_until(lambda: _available(world))
    world.call("TestFailover", ReplicationGroupId="cl", NodeGroupId="0001")
    with pytest.raises(ApiError) as err:  # serialised within a group
        world.call("TestFailover", ReplicationGroupId="cl", NodeGroupId="0002")
    assert err.value.code == "InvalidReplicationGroupState"
    world.settle_until(lambda: _available(world))
    assert _roles(world)["cl-0001-002"] == "primary"
