"""ModifyReplicationGroupShardConfiguration on the fake runtime (whose cluster nodes keep slots
and keys): shards added and removed with their slots and keys moved, the progress shown, a move
interrupted midway finished after a control-plane restart, AWS's validation."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.handlers.resharding import balanced
from engine import SLOTS, merge_ranges, slot_count
from engine.cluster import key_slot
from engine.slot_migration import parse_own_line
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

NODE = "123456789012-us-east-1-{}-0001"
BASIC = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}
KEYS = {f"key:{i}": str(i) for i in range(3000)}


def _group(world: World) -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId="cl")["ReplicationGroups"][0]


def _available(world: World) -> bool:
    return _group(world)["Status"] == "available"


def _make(world: World, shards: int = 3) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="cl", NumNodeGroups=shards, ReplicasPerNodeGroup=1,
               **BASIC)
    world.settle_until(lambda: _available(world))
    owners = _owners(world)
    for primary in {o for o in owners.values()}:
        world.runtime.set_data(NODE.format(primary), {k: v for k, v in KEYS.items()
                                                      if owners[key_slot(k)] == primary})


def _owners(world: World) -> dict[int, str]:
    """Slot -> the member whose node serves it, as the cluster says."""
    group = _group(world)
    primaries = {m["CacheClusterId"] for g in group["NodeGroups"] for m in g["NodeGroupMembers"]
                 if m["CurrentRole"] == "primary"}
    out = {}
    for member in primaries:
        for first, last in world.runtime.cluster_view(NODE.format(member)).me.slots:
            out.update(dict.fromkeys(range(first, last + 1), member))
    return out


def _all_keys(world: World) -> dict[str, str]:
    """Every key served, each checked to be on the node serving its slot."""
    owners, out = _owners(world), {}
    for member in set(owners.values()):
        data = world.runtime.data_of(NODE.format(member))
        assert all(owners[key_slot(k)] == member for k in data), f"{member} holds keys of slots it does not serve"
        out.update(data)
    return out


def _reshard(world: World, count: int, **extra: Any) -> dict[str, Any]:
    return world.call("ModifyReplicationGroupShardConfiguration", ReplicationGroupId="cl", NodeGroupCount=count,
                      ApplyImmediately=True, **extra)["ReplicationGroup"]


def test_scale_out_moves_slots_and_keys_to_the_new_shard(world: World) -> None:
    _make(world)
    answer = _reshard(world, 4)
    assert answer["Status"] == "modifying"
    assert [g["NodeGroupId"] for g in answer["NodeGroups"]] == ["0001", "0002", "0003", "0004"]
    world.settle_until(lambda: _available(world))
    group = _group(world)
    assert group["MemberClusters"][-2:] == ["cl-0004-001", "cl-0004-002"]
    counts = [slot_count(merge_ranges(_ranges(g["Slots"]))) for g in group["NodeGroups"]]
    assert counts == [4096] * 4
    assert len(set(_owners(world).values())) == 4 and len(_owners(world)) == SLOTS
    assert _all_keys(world) == KEYS
    assert "PendingModifiedValues" not in group or "Resharding" not in group["PendingModifiedValues"]
    events = [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group")["Events"]]
    assert any(e.startswith("Started online resharding of replication group cl: 3 to 4") for e in events)
    assert any(e.startswith("Completed online resharding of replication group cl") for e in events)


def test_scale_in_empties_the_removed_shards_then_deletes_them(world: World) -> None:
    _make(world, shards=4)
    _reshard(world, 2, NodeGroupsToRemove=["0002", "0004"])
    world.settle_until(lambda: _available(world))
    group = _group(world)
    assert [g["NodeGroupId"] for g in group["NodeGroups"]] == ["0001", "0003"]
    assert group["MemberClusters"] == ["cl-0001-001", "cl-0001-002", "cl-0003-001", "cl-0003-002"]
    assert _all_keys(world) == KEYS
    assert world.runtime.inspect(NODE.format("cl-0002-001")) is None  # stopped and removed
    view = world.runtime.cluster_view(NODE.format("cl-0001-001"))
    assert len(view.nodes) == 4 and view.state_ok  # the removed nodes forgotten
    _reshard(world, 1, NodeGroupsToRetain=["0003"])
    world.settle_until(lambda: _available(world))
    assert _group(world)["NodeGroups"][0]["Slots"] == "0-16383"
    assert _all_keys(world) == KEYS


def test_an_interrupted_move_is_finished_after_a_restart_with_its_progress(world: World) -> None:
    _make(world)
    world.runtime.interrupt_moves_after = 1500
    _reshard(world, 4)
    world.settle_until(lambda: "Resharding" in _group(world)["PendingModifiedValues"])
    progress = _group(world)["PendingModifiedValues"]["Resharding"]["SlotMigration"]["ProgressPercentage"]
    assert 0 < progress < 100
    assert _group(world)["Status"] == "modifying"
    world = world.restart()
    world.service.groups.startup()  # what the service does at its start
    world.service.controller.enqueue_all()
    world.settle_until(lambda: _available(world))
    assert _all_keys(world) == KEYS
    assert len(set(_owners(world).values())) == 4
    world.service.store.close()


def test_rebalance_at_the_same_count_and_balanced_layouts() -> None:
    layout = balanced({"a": [(0, 99)], "b": [(100, SLOTS - 1)]}, ["a", "b"])
    assert [slot_count(r) for r in layout.values()] == [8192, 8192]
    assert layout["a"][0] == (0, 99)  # kept what it had
    grown = balanced({"a": [(0, 8191)], "b": [(8192, SLOTS - 1)]}, ["a", "b", "c"])
    assert sorted(slot_count(r) for r in grown.values()) == [5461, 5461, 5462]
    assert grown["a"][0][0] == 0 and grown["b"][0][0] == 8192
    shrunk = balanced({"a": [(0, 5461)], "b": [(5462, 10922)], "c": [(10923, SLOTS - 1)]}, ["a", "c"])
    assert merge_ranges([*shrunk["a"], *shrunk["c"]]) == ((0, SLOTS - 1),)
    assert shrunk["a"][0][0] == 0 and [slot_count(r) for r in shrunk.values()] == [8192, 8192]


def test_rebalance_same_count(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="cl", NumNodeGroups=2, ReplicasPerNodeGroup=0, **BASIC,
               NodeGroupConfiguration=[{"Slots": "0-99"}, {"Slots": "100-16383"}])
    world.settle_until(lambda: _available(world))
    _reshard(world, 2)
    world.settle_until(lambda: _available(world))
    assert [g["Slots"] for g in _group(world)["NodeGroups"]] == ["0-99,8292-16383", "100-8291"]


@pytest.mark.parametrize(("params", "code"), [
    ({"NodeGroupCount": 2}, "InvalidParameterCombination"),
    ({"NodeGroupCount": 2, "NodeGroupsToRemove": ["0001"], "NodeGroupsToRetain": ["0002", "0003"]},
     "InvalidParameterCombination"),
    ({"NodeGroupCount": 2, "NodeGroupsToRemove": ["0009"]}, "InvalidParameterValue"),
    ({"NodeGroupCount": 1, "NodeGroupsToRemove": ["0001"]}, "InvalidParameterValue"),
    ({"NodeGroupCount": 2, "NodeGroupsToRetain": ["0001"]}, "InvalidParameterValue"),
    ({"NodeGroupCount": 4, "NodeGroupsToRemove": ["0001"]}, "InvalidParameterCombination"),
    ({"NodeGroupCount": 2, "NodeGroupsToRemove": ["0001"], "ReshardingConfiguration": [
        {"PreferredAvailabilityZones": ["us-east-1a"]}]}, "InvalidParameterCombination"),
    ({"NodeGroupCount": 4, "ReshardingConfiguration": [{"PreferredAvailabilityZones": ["us-east-1a"]}]},
     "InvalidParameterValue"),
    ({"NodeGroupCount": 4, "ReshardingConfiguration": [{"NodeGroupId": "0001"}] * 4}, "InvalidParameterValue"),
    ({"NodeGroupCount": 4, "ReshardingConfiguration": [{}, {}, {}, {"PreferredAvailabilityZones": ["us-east-1a"]}]},
     "InvalidParameterValue"),
    ({"NodeGroupCount": 501}, "NodeGroupsPerReplicationGroupQuotaExceeded"),
    ({"NodeGroupCount": 0}, "NodeGroupsPerReplicationGroupQuotaExceeded"),
    ({"NodeGroupCount": 46}, "NodeQuotaForCustomerExceeded"),
    ({"NodeGroupCount": 4, "ApplyImmediately": False}, "InvalidParameterValue"),
])
def test_refused_as_aws_does(world: World, params: dict[str, Any], code: str) -> None:
    _make(world)
    with pytest.raises(ApiError) as raised:
        world.call("ModifyReplicationGroupShardConfiguration", ReplicationGroupId="cl",
                   **{"ApplyImmediately": True, **params})
    assert raised.value.code == code
    assert [g["NodeGroupId"] for g in _group(world)["NodeGroups"]] == ["0001", "0002", "0003"]
    assert _group(world)["Status"] == "available"


def test_new_shards_take_the_zones_and_ids_asked(world: World) -> None:
    _make(world)
    _reshard(world, 4, ReshardingConfiguration=[
        {"NodeGroupId": "0001"}, {"NodeGroupId": "0002"}, {"NodeGroupId": "0003"},
        {"NodeGroupId": "0010", "PreferredAvailabilityZones": ["us-east-1c", "us-east-1b"]}])
    with pytest.raises(ApiError) as raised:  # modifying: a second change waits
        _reshard(world, 5)
    assert raised.value.code == "InvalidReplicationGroupState"
    world.settle_until(lambda: _available(world))
    new = _group(world)["NodeGroups"][-1]
    assert new["NodeGroupId"] == "0010"
    assert {m["CacheClusterId"]: m["PreferredAvailabilityZone"] for m in new["NodeGroupMembers"]} == {
        "cl-0010-001": "us-east-1c", "cl-0010-002": "us-east-1b"}


def test_cluster_mode_disabled_and_missing_groups(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="plain", NumCacheClusters=1, **BASIC)
    with pytest.raises(ApiError) as raised:
        world.call("ModifyReplicationGroupShardConfiguration", ReplicationGroupId="plain", NodeGroupCount=2,
                   ApplyImmediately=True)
    assert raised.value.code in ("InvalidParameterValue", "InvalidReplicationGroupState")
    with pytest.raises(ApiError) as raised:
        world.call("ModifyReplicationGroupShardConfiguration", ReplicationGroupId="nope", NodeGroupCount=2,
                   ApplyImmediately=True)
    assert raised.value.code == "ReplicationGroupNotFoundFault"


def test_own_line_parsing_and_key_slots() -> None:
    text = ("abc 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-10 12 [11->-def] [13-<-ghi]\n"
            "def 127.0.0.1:7001@17001 master - 0 0 2 connected 14-20\n")
    own = parse_own_line(text)
    assert own.node_id == "abc" and own.slots == set(range(11)) | {12}
    assert own.migrating == {11: "def"} and own.importing == {13: "ghi"}
    assert key_slot("foo") == 12182 and key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("123456789") == 12739 and key_slot("{}x") == key_slot("{}x")


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        out.append((int(first), int(last or first)))
    return out
