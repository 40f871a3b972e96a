"""Cluster mode enabled on the fake runtime (whose nodes keep a fake cluster state): shards,
slots, the configuration endpoint, per-shard failover, validation, delete."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine import SLOTS, RuntimeError_
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World, whole_app

NODE = "123456789012-us-east-1-{}-0001"
BASIC = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}


def _group(world: World, group_id: str = "cl") -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId=group_id)["ReplicationGroups"][0]


def _make(world: World, shards: int = 3, replicas: int = 1, **extra: Any) -> dict[str, Any]:
    created = world.call("CreateReplicationGroup", ReplicationGroupId="cl", NumNodeGroups=shards,
                         ReplicasPerNodeGroup=replicas, **BASIC, **extra)["ReplicationGroup"]
    world.settle_until(lambda: _group(world)["Status"] == "available")
    return created


def _rg_events(world: World) -> list[str]:
    return [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group",
                                             SourceIdentifier="cl")["Events"]]


def _roles(world: World) -> dict[str, str]:
    return {m["CacheClusterId"]: m["CurrentRole"] for g in _group(world)["NodeGroups"] for m in g["NodeGroupMembers"]}


def _following(world: World, member: str) -> bool:
    """The member's node is a replica in the cluster (and its group knows it is available)."""
    try:
        view = world.runtime.cluster_view(NODE.format(member))
    except RuntimeError_:
        return False  # not running (yet)
    cluster = world.call("DescribeCacheClusters", CacheClusterId=member)["CacheClusters"][0]
    return view.me.master_id is not None and cluster["CacheClusterStatus"] == "available"


def _slot_owners(world: World, member: str) -> dict[tuple[int, int], str]:
    """The slot map as `member`'s node sees it, owners named by their node's address."""
    view = world.runtime.cluster_view(NODE.format(member))
    hosts = {n.node_id: n.host for n in view.nodes}
    return {r: hosts[owner] for r, owner in view.slot_map().items()}


def test_create_forms_a_cluster_with_even_slots_and_a_configuration_endpoint(world: World) -> None:
    created = _make(world)
    assert created["Status"] == "creating" and created["ClusterEnabled"] is True
    assert created["MemberClusters"] == [f"cl-000{s}-00{n}" for s in (1, 2, 3) for n in (1, 2)]
    group = _group(world)
    assert group["ClusterEnabled"] is True and group["ClusterMode"] == "enabled"
    assert group["AutomaticFailover"] == "enabled"
    assert [g["Slots"] for g in group["NodeGroups"]] == ["0-5461", "5462-10922", "10923-16383"]
    assert all("PrimaryEndpoint" not in g and "ReaderEndpoint" not in g for g in group["NodeGroups"])
    assert _roles(world) == {f"cl-000{s}-00{n}": "primary" if n == 1 else "replica" for s in (1, 2, 3) for n in (1, 2)}
    config = group["ConfigurationEndpoint"]
    rt = world.runtime
    holders = rt.listeners(config["Address"])
    assert len(holders) == 1 and config["Port"] == 6379
    # Every node agrees: each shard's primary serves its slots; replicas follow their primary.
    view = rt.cluster_view(NODE.format("cl-0002-002"))
    assert len(view.nodes) == 6 and view.state_ok
    primary = view.node(view.me.master_id or "")
    assert primary is not None and primary.slots == ((5462, 10922),)
    assert _slot_owners(world, "cl-0001-001") == _slot_owners(world, "cl-0003-002")
    settings = rt.config_of(NODE.format("cl-0001-001")).settings
    assert settings["cluster-enabled"] == "yes" and settings["cluster-announce-port"] == "6379"
    members = world.call("DescribeCacheClusters")["CacheClusters"]
    assert {c["CacheClusterStatus"] for c in members} == {"available"}
    assert {c["ReplicationGroupId"] for c in members} == {"cl"}
    assert {c["CacheParameterGroup"]["CacheParameterGroupName"] for c in members} == {"default.redis7.cluster.on"}
    assert "Replication group cl created" in _rg_events(world)


def test_slots_as_asked_and_node_group_ids(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="cl", **BASIC, NumNodeGroups=2,
               CacheParameterGroupName="default.redis7.cluster.on", AutomaticFailoverEnabled=True,
               NodeGroupConfiguration=[
                   {"NodeGroupId": "0001", "Slots": "0-99,8000-16383", "ReplicaCount": 0},
                   {"NodeGroupId": "0002", "Slots": "100-7999", "ReplicaCount": 2,
                    "PrimaryAvailabilityZone": "us-east-1a",
                    "ReplicaAvailabilityZones": ["us-east-1b", "us-east-1c"]}])
    world.settle_until(lambda: _group(world)["Status"] == "available")
    group = _group(world)
    assert [g["Slots"] for g in group["NodeGroups"]] == ["0-99,8000-16383", "100-7999"]
    assert group["MemberClusters"] == ["cl-0001-001", "cl-0002-001", "cl-0002-002", "cl-0002-003"]
    azs = {m["CacheClusterId"]: m["PreferredAvailabilityZone"] for m in group["NodeGroups"][1]["NodeGroupMembers"]}
    assert azs == {"cl-0002-001": "us-east-1a", "cl-0002-002": "us-east-1b", "cl-0002-003": "us-east-1c"}
    view = world.runtime.cluster_view(NODE.format("cl-0002-003"))
    assert sorted(view.slot_map()) == [(0, 99), (100, 7999), (8000, SLOTS - 1)]


@pytest.mark.parametrize(("params", "code"), [
    ({"NumNodeGroups": 2, "AutomaticFailoverEnabled": False}, "InvalidParameterCombination"),
    ({"NumNodeGroups": 501}, "NodeGroupsPerReplicationGroupQuotaExceeded"),
    ({"NumNodeGroups": 16, "ReplicasPerNodeGroup": 5}, "NodeQuotaForClusterExceeded"),
    ({"NumNodeGroups": 2, "ReplicasPerNodeGroup": 6}, "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "NumCacheClusters": 2}, "InvalidParameterCombination"),
    ({"ClusterMode": "sideways"}, "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "CacheParameterGroupName": "default.redis6.x.cluster.on"}, "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "CacheParameterGroupName": "mine"}, "CacheParameterGroupNotFound"),
    ({"NumNodeGroups": 2, "NodeGroupConfiguration": [{"Slots": "0-8000"}, {"Slots": "8000-16383"}]},
     "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "NodeGroupConfiguration": [{"Slots": "0-8000"}, {"Slots": "8002-16383"}]},
     "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "NodeGroupConfiguration": [{"Slots": "0-8000"}, {"Slots": "8001-16384"}]},
     "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "NodeGroupConfiguration": [{"Slots": "0-8000"}]}, "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "NodeGroupConfiguration": [{"NodeGroupId": "0001"}, {"NodeGroupId": "0001"}]},
     "InvalidParameterValue"),
    ({"NumNodeGroups": 2, "NodeGroupConfiguration": [{"ReplicaCount": 1, "ReplicaAvailabilityZones": ["a", "b"]},
                                                     {"ReplicaCount": 1}]}, "InvalidParameterCombination"),
])
def test_create_validation(world: World, params: dict[str, Any], code: str) -> None:
    with pytest.raises(ApiError) as err:
        world.call("CreateReplicationGroup", ReplicationGroupId="cl", **BASIC, **params)
    assert err.value.code == code, err.value.message
    assert err.value.status in (400, 404)
    assert world.call("DescribeReplicationGroups")["ReplicationGroups"] == []
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_primary_crash_fails_over_that_shard_only(world: World) -> None:
    _make(world)
    rt = world.runtime
    others = {s: rt.cluster_id_of(NODE.format(f"cl-000{s}-001")) for s in (1, 3)}
    dead_id = rt.cluster_id_of(NODE.format("cl-0002-001"))
    rt.crash(NODE.format("cl-0002-001"))
    world.settle_until(lambda: _group(world)["Status"] == "available" and _following(world, "cl-0002-001"))
    roles = _roles(world)
    assert roles["cl-0002-002"] == "primary" and roles["cl-0002-001"] == "replica"
    assert roles["cl-0001-001"] == roles["cl-0003-001"] == "primary"
    assert rt.calls_of("cluster_failover") == [NODE.format("cl-0002-002")]
    # The old primary was replaced: a new, empty node with a new identity, a replica of the new
    # primary; every node forgot the old one. The rest untouched.
    replacement = rt.cluster_id_of(NODE.format("cl-0002-001"))
    assert replacement != dead_id
    view = rt.cluster_view(NODE.format("cl-0001-002"))
    new = view.node(rt.cluster_id_of(NODE.format("cl-0002-002")) or "")
    assert new is not None and new.role == "master" and new.slots == ((5462, 10922),)
    assert view.node(replacement or "").master_id == new.node_id  # type: ignore[union-attr]
    assert view.node(dead_id or "") is None and len(view.nodes) == 6
    assert len(rt.calls_of("cluster_forget")) == 5  # on every node that knew it
    assert {s: rt.cluster_id_of(NODE.format(f"cl-000{s}-001")) for s in (1, 3)} == others
    events = _rg_events(world)
    assert "Failover from primary node cl-0002-001 to replica node cl-0002-002 completed" in events


def test_shard_without_replica_restarts_in_place(world: World) -> None:
    _make(world, shards=2, replicas=0)
    world.runtime.crash(NODE.format("cl-0001-001"))
    world.settle_until(lambda: _group(world)["Status"] == "available")
    assert world.runtime.calls_of("cluster_failover") == []
    assert _roles(world) == {"cl-0001-001": "primary", "cl-0002-001": "primary"}


def test_configuration_endpoint_moves_when_its_node_dies(world: World) -> None:
    _make(world, shards=2, replicas=1)
    address = _group(world)["ConfigurationEndpoint"]["Address"]
    holder = world.runtime.listeners(address)[0]
    world.runtime.crash(holder)
    world.settle_until(lambda: _group(world)["Status"] == "available")
    assert len(world.runtime.listeners(address)) == 1


def test_test_failover_with_node_group_id(world: World) -> None:
    _make(world)
    with pytest.raises(ApiError) as err:
        world.call("TestFailover", ReplicationGroupId="cl", NodeGroupId="0009")
    assert err.value.code == "NodeGroupNotFoundFault"
    answer = world.call("TestFailover", ReplicationGroupId="cl", NodeGroupId="0003")["ReplicationGroup"]
    assert answer["Status"] == "available"
    world.settle_until(lambda: _group(world)["Status"] == "available")
    roles = _roles(world)
    assert roles["cl-0003-002"] == "primary" and roles["cl-0003-001"] == "replica"
    assert roles["cl-0001-001"] == "primary" and roles["cl-0002-001"] == "primary"
    assert "Test Failover API called for node group 0003" in _rg_events(world)


def test_unsupported_changes_are_refused(world: World) -> None:
    _make(world, shards=2)
    for op, params in (("ModifyReplicationGroup", {"PrimaryClusterId": "cl-0001-002", "ApplyImmediately": True}),):
        with pytest.raises(ApiError) as err:
            world.call(op, ReplicationGroupId="cl", **params)
        assert err.value.code == "InvalidParameterCombination"


def test_delete_stops_every_node(world: World) -> None:
    _make(world, shards=2, replicas=1)
    names = [NODE.format(f"cl-000{s}-00{n}") for s in (1, 2) for n in (1, 2)]
    deleted = world.call("DeleteReplicationGroup", ReplicationGroupId="cl")["ReplicationGroup"]
    assert deleted["Status"] == "deleting"
    world.settle()
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    assert all(world.runtime.inspect(n) is None for n in names)
    with pytest.raises(ApiError):
        _group(world)


def test_ports_addressing_serves_the_configuration_endpoint_by_forwarder(tmp_path: Any) -> None:
    world = World(tmp_path, addressing="ports")
    try:
        _make(world, shards=2, replicas=1)
        config = _group(world)["ConfigurationEndpoint"]
        name = "123456789012-us-east-1-cl-config"
        assert world.hub.endpoints[name] == (config["Address"], config["Port"])
        target = world.hub.targets[name]
        holder = next(m for g in _group(world)["NodeGroups"] for m in g["NodeGroupMembers"]
                      if (m["ReadEndpoint"]["Address"], m["ReadEndpoint"]["Port"]) == target)
        world.runtime.crash(NODE.format(holder["CacheClusterId"]))
        world.settle_until(lambda: _group(world)["Status"] == "available")
        assert world.hub.targets[name] is not None
        world.call("DeleteReplicationGroup", ReplicationGroupId="cl")
        world.settle()
        assert name not in world.hub.endpoints
    finally:
        world.service.store.close()


def test_dashboard_shows_the_shards_and_the_configuration_endpoint(world: World) -> None:
    _make(world, shards=2, replicas=1)
    config = _group(world)["ConfigurationEndpoint"]
    with TestClient(whole_app(world), base_url="http://127.0.0.1:8379") as client:
        page = client.get("/dashboard/replication-groups/cl/live").text
    assert "Configuration endpoint" in page and f"{config['Address']}:{config['Port']}" in page
    assert "Node group 0001" in page and "slots 0-8191" in page and "slots 8192-16383" in page


def test_a_restarted_control_plane_keeps_the_cluster(world: World) -> None:
    _make(world, shards=2, replicas=1)
    ids = {m: world.runtime.cluster_id_of(NODE.format(m)) for m in _roles(world)}
    starts = len(world.runtime.calls_of("start"))
    again = world.restart()
    again.service.groups.startup()  # what the service does at its start: owns its nodes again
    again.service.controller.enqueue_all()
    try:
        again.settle_until(lambda: _group(again)["Status"] == "available")
        assert len(again.runtime.calls_of("start")) == starts  # the running nodes were kept
        assert {m: again.runtime.cluster_id_of(NODE.format(m)) for m in _roles(again)} == ids
        again.runtime.crash(NODE.format("cl-0001-001"))
        again.settle_until(lambda: _following(again, "cl-0001-001"))
        assert _roles(again)["cl-0001-002"] == "primary"
    finally:
        again.service.store.close()
