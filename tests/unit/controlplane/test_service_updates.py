"""Service updates on the fake runtime and fake clock: published when a newer patch release of a
cache's line can run, applied (replicas first, the primary after a switchover), stopped, and
applied by the service in the maintenance window after the recommended apply-by date."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane.reconciler.nodes import POLL
from engine.runtime.fake import FakeRuntime
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_shapes_match_model import _check

OLD, NEW = "7.0.11", "7.0.15"
UPDATE = "elasticache-redis-7-0-15-update"
REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro", "EngineVersion": "7.0"}
GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
         "EngineVersion": "7.0"}
NODE = "123456789012-us-east-1-{}-0001"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, FakeRuntime({"redis": (OLD,), "memcached": ("1.6.17",)}))
    yield w
    w.service.store.close()


def _install(world: World, redis: tuple[str, ...] = (OLD, NEW), memcached: tuple[str, ...] = ("1.6.17",)) -> None:
    """A newer patch release becomes runnable; the caches' next passes notice it."""
    world.runtime.set_available_versions({"redis": redis, "memcached": memcached})
    world.service.controller.enqueue_all()
    world.settle()


def _actions(world: World, **params: Any) -> list[dict[str, Any]]:
    return world.call("DescribeUpdateActions", **params)["UpdateActions"]


def _action(world: World, **params: Any) -> dict[str, Any]:
    found = _actions(world, ShowNodeLevelUpdateStatus=True, **params)
    assert len(found) == 1, found
    return found[0]


def _version(world: World, cluster: str) -> str | None:
    info = world.runtime.inspect(NODE.format(cluster))
    return info.version if info is not None else None


def _events(world: World, source_type: str, source_id: str) -> list[str]:
    return [e["Message"] for e in world.call("DescribeEvents", SourceType=source_type,
                                             SourceIdentifier=source_id)["Events"]]


def _cluster(world: World, cluster_id: str = "web", **extra: Any) -> None:
    world.call("CreateCacheCluster", CacheClusterId=cluster_id, **REDIS, **extra)
    world.settle()


def _group(world: World, **extra: Any) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=3, AutomaticFailoverEnabled=True,
               **GROUP, **extra)
    world.settle()


def _step_until(world: World, done: Any, group: str = "rg") -> list[tuple[str, str]]:
    """Run the control loop one key at a time (the fake clock moves on when nothing is due) until
    `done(action)`; returns every distinct (status, NodesUpdated) the group's action showed."""
    seen: list[tuple[str, str]] = []
    for _ in range(2000):
        if world.service.controller.drain(max_steps=1) == 0:
            world.clock.advance(POLL)
        action = _action(world, ReplicationGroupIds=[group])
        if not seen or seen[-1] != (action["UpdateActionStatus"], action["NodesUpdated"]):
            seen.append((action["UpdateActionStatus"], action["NodesUpdated"]))
        if done(action):
            return seen
    raise AssertionError(f"not done: {seen}")


def _primary(world: World) -> str:
    group = world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]
    return next(m["CacheClusterId"] for m in group["NodeGroups"][0]["NodeGroupMembers"]
                if m["CurrentRole"] == "primary")


def test_nothing_to_update_when_no_newer_patch_can_run(world: World) -> None:
    _cluster(world)
    _install(world, redis=(OLD, "7.1.4"))  # a newer minor is an engine version change, not an update
    assert world.call("DescribeServiceUpdates")["ServiceUpdates"] == []
    assert _actions(world) == []
    assert _version(world, "web") == OLD


def test_a_newer_patch_is_published_and_restarts_nothing(world: World) -> None:
    _cluster(world)
    starts = [c for c in world.runtime.calls if c[0] == "start"]
    _install(world)
    assert [c for c in world.runtime.calls if c[0] == "start"] == starts  # nodes keep their patch
    assert _version(world, "web") == OLD
    cluster = world.call("DescribeCacheClusters", CacheClusterId="web")["CacheClusters"][0]
    # AWS's release of the 7.0 line, whichever patch runs (the binary is the service update's business).
    assert cluster["EngineVersion"] == "7.0.7" and cluster["CacheClusterStatus"] == "available"
    [update] = world.call("DescribeServiceUpdates")["ServiceUpdates"]
    now = world.clock.now()
    assert update["ServiceUpdateName"] == UPDATE
    assert update["ServiceUpdateStatus"] == "available" and update["ServiceUpdateType"] == "security-update"
    assert update["Engine"] == "redis" and update["EngineVersion"] == NEW
    assert update["ServiceUpdateReleaseDate"] == now
    assert update["ServiceUpdateRecommendedApplyByDate"] == now + timedelta(days=30)
    assert update["AutoUpdateAfterRecommendedApplyByDate"] is True
    action = _action(world)
    assert action["CacheClusterId"] == "web" and action["UpdateActionStatus"] == "not-applied"
    assert action["NodesUpdated"] == "0/1"
    assert action["CacheNodeUpdateStatus"][0]["NodeUpdateStatus"] == "not-applied"
    assert "Service update is available for cache node 0001." in world.events("web")  # AWS's text


def test_apply_on_a_standalone_cluster(world: World) -> None:
    _cluster(world)
    _install(world)
    world.runtime.set_ready_after(10**6)  # the restarted node does not answer...
    result = world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, CacheClusterIds=["WEB"])
    assert result["ProcessedUpdateActions"] == [
        {"CacheClusterId": "web", "ServiceUpdateName": UPDATE, "UpdateActionStatus": "waiting-to-start"}]
    assert result["UnprocessedUpdateActions"] == []
    world.settle()
    action = _action(world)
    # Restarted, not answering yet: not complete until the node reports the new version.
    assert action["UpdateActionStatus"] == "in-progress" and action["NodesUpdated"] == "0/1"
    assert action["CacheNodeUpdateStatus"][0]["NodeUpdateStatus"] == "in-progress"
    world.runtime.set_ready_after(0)  # ...until it crashes and is started again
    world.runtime.crash(NODE.format("web"))
    world.settle_until(lambda: _action(world)["UpdateActionStatus"] == "complete")
    assert _version(world, "web") == NEW
    action = _action(world)
    node = action["CacheNodeUpdateStatus"][0]
    assert action["NodesUpdated"] == "1/1" and action["SlaMet"] == "yes"
    assert node["NodeUpdateStatus"] == "complete" and node["NodeUpdateInitiatedBy"] == "customer"
    assert node["NodeUpdateStartDate"] <= node["NodeUpdateEndDate"]
    cluster = world.call("DescribeCacheClusters", CacheClusterId="web", ShowCacheNodeInfo=True)["CacheClusters"][0]
    assert cluster["EngineVersion"] == "7.0.7" and cluster["CacheClusterStatus"] == "available"
    events = world.events("web")
    assert events.index(f"Service update {UPDATE} started: moving the nodes to Redis OSS {NEW}") < \
        events.index(f"Service update {UPDATE} applied on cache node 0001") < \
        events.index(f"Service update {UPDATE} completed: every node runs Redis OSS {NEW}")
    again = world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, CacheClusterIds=["web"])
    assert again["ProcessedUpdateActions"] == []
    assert again["UnprocessedUpdateActions"][0]["ErrorType"] == "InvalidParameterValue"


def test_apply_on_a_replication_group_rolls_replicas_first_then_switches_over(world: World) -> None:
    _group(world)
    _install(world)
    assert _primary(world) == "rg-001"
    world.runtime.set_ready_after(2)
    mark = len(world.runtime.calls)
    world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, ReplicationGroupIds=["rg"])
    seen = _step_until(world, lambda a: a["UpdateActionStatus"] == "complete")
    assert seen[0] == ("waiting-to-start", "0/3") and seen[-1] == ("complete", "3/3")
    assert ("in-progress", "1/3") in seen and ("in-progress", "2/3") in seen
    assert {status for status, _ in seen} == {"waiting-to-start", "in-progress", "complete"}
    assert all(_version(world, f"rg-00{i}") == NEW for i in (1, 2, 3))
    # Replicas restarted first; the old primary last, after handing its role to an updated replica.
    restarts = [name for op, name in world.runtime.calls[mark:] if op == "start"]
    assert restarts.index(NODE.format("rg-001")) == len(restarts) - 1
    assert _primary(world) != "rg-001"
    # The hand-over before the primary's restart reads as AWS writes it in an engine upgrade.
    new = _primary(world)
    assert f"Failover from primary node rg-001 to replica node {new} completed" in world.events("rg-001")
    group_events = _events(world, "replication-group", "rg")
    at = group_events.index(f"Failover to replica node {new} completed")
    assert group_events[at + 1] == f"Failover from primary node rg-001 to replica node {new} completed"
    members = _action(world, ReplicationGroupIds=["rg"])["NodeGroupUpdateStatus"][0]["NodeGroupMemberUpdateStatus"]
    assert {(m["CacheClusterId"], m["NodeUpdateStatus"]) for m in members} == {
        ("rg-001", "complete"), ("rg-002", "complete"), ("rg-003", "complete")}
    assert f"Service update {UPDATE} applied on cache node 0001" in world.events("rg-002")
    group = world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]
    assert group["Status"] == "available"


def test_stop_leaves_updated_nodes_updated(world: World) -> None:
    _group(world)
    _install(world)
    world.runtime.set_ready_after(2)
    world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, ReplicationGroupIds=["rg"])
    _step_until(world, lambda a: a["NodesUpdated"] == "1/3")
    stopped = world.call("BatchStopUpdateAction", ServiceUpdateName=UPDATE, ReplicationGroupIds=["rg"])
    assert stopped["ProcessedUpdateActions"] == [
        {"ReplicationGroupId": "rg", "ServiceUpdateName": UPDATE, "UpdateActionStatus": "stopping"}]
    world.settle_until(lambda: _action(world, ReplicationGroupIds=["rg"])["UpdateActionStatus"] == "stopped")
    for _ in range(5):  # nothing moves afterwards: no further update, no downgrade
        world.clock.advance(1.0)
        world.service.controller.enqueue_all()
        world.settle()
    versions = sorted(_version(world, f"rg-00{i}") or "" for i in (1, 2, 3))
    action = _action(world, ReplicationGroupIds=["rg"])
    updated = int(action["NodesUpdated"].split("/")[0])
    assert action["UpdateActionStatus"] == "stopped" and 1 <= updated < 3
    assert versions.count(NEW) == updated and _version(world, "rg-001") == OLD  # the primary goes last
    assert f"Service update {UPDATE} stopped: {updated} of 3 nodes updated" in _events(world, "replication-group",
                                                                                        "rg")
    nodes = action["NodeGroupUpdateStatus"][0]["NodeGroupMemberUpdateStatus"]
    assert {m["NodeUpdateStatus"] for m in nodes} == {"complete", "stopped"}
    # Stopping again is a no-op; applying again finishes the job.
    again = world.call("BatchStopUpdateAction", ServiceUpdateName=UPDATE, ReplicationGroupIds=["rg"])
    assert again["ProcessedUpdateActions"][0]["UpdateActionStatus"] == "stopped"
    world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, ReplicationGroupIds=["rg"])
    world.settle_until(lambda: _action(world, ReplicationGroupIds=["rg"])["UpdateActionStatus"] == "complete")
    assert all(_version(world, f"rg-00{i}") == NEW for i in (1, 2, 3))


def test_stop_refused_when_nothing_runs(world: World) -> None:
    _cluster(world)
    _install(world)
    result = world.call("BatchStopUpdateAction", ServiceUpdateName=UPDATE, CacheClusterIds=["web"])
    assert result["ProcessedUpdateActions"] == []
    assert "not being applied" in result["UnprocessedUpdateActions"][0]["ErrorMessage"]


def test_applied_by_the_service_in_the_window_after_the_apply_by_date(world: World) -> None:
    # The fake clock starts on a Thursday at 12:00; the apply-by date is 30 days on, a Saturday.
    _cluster(world, PreferredMaintenanceWindow="sat:13:00-sat:14:00")
    _install(world)
    world.clock.advance(timedelta(days=30))
    world.service.controller.enqueue_all()
    world.settle()
    action = _action(world)
    assert action["UpdateActionStatus"] == "scheduled" and _version(world, "web") == OLD
    world.clock.advance(timedelta(hours=1, minutes=30))  # 13:30: inside the window
    world.settle_until(lambda: _action(world)["UpdateActionStatus"] == "complete")
    assert _version(world, "web") == NEW
    action = _action(world)
    assert action["CacheNodeUpdateStatus"][0]["NodeUpdateInitiatedBy"] == "system"
    assert action["SlaMet"] == "no"  # done after the recommended apply-by date
    assert any(e.startswith(f"Applying service update {UPDATE} in the maintenance window") for e in
               world.events("web"))


def test_not_applied_before_the_window(world: World) -> None:
    _cluster(world, PreferredMaintenanceWindow="sun:13:00-sun:14:00")
    _install(world)
    world.clock.advance(timedelta(days=30, hours=2))  # past the date, but Saturday 14:00
    world.service.controller.enqueue_all()
    world.settle()
    assert _action(world)["UpdateActionStatus"] == "scheduled" and _version(world, "web") == OLD


def test_memcached_nodes_update_one_at_a_time(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=3, EngineVersion="1.6.17")
    world.settle()
    _install(world, memcached=("1.6.17", "1.6.22"))
    world.runtime.set_ready_after(2)
    world.call("BatchApplyUpdateAction", ServiceUpdateName="elasticache-memcached-1-6-22-update",
               CacheClusterIds=["mc"])
    for _ in range(100):
        world.settle()
        nodes = world.call("DescribeCacheClusters", CacheClusterId="mc",
                           ShowCacheNodeInfo=True)["CacheClusters"][0]["CacheNodes"]
        assert sum(n["CacheNodeStatus"] != "available" for n in nodes) <= 1
        if _action(world, CacheClusterIds=["mc"])["UpdateActionStatus"] == "complete":
            break
        world.clock.advance(POLL)
    assert _action(world, CacheClusterIds=["mc"])["NodesUpdated"] == "3/3"


def test_describe_filters_and_paging(world: World) -> None:
    for i in range(21):
        world.call("CreateCacheCluster", CacheClusterId=f"c{i:02d}", **REDIS)
    world.settle()
    _group(world)
    _install(world)
    assert len(_actions(world)) == 22
    first = world.call("DescribeUpdateActions", MaxRecords=20)
    second = world.call("DescribeUpdateActions", MaxRecords=20, Marker=first["Marker"])
    assert len(first["UpdateActions"]) == 20 and "Marker" not in second
    ids = [a.get("CacheClusterId") or a["ReplicationGroupId"] for a in first["UpdateActions"] + second["UpdateActions"]]
    assert len(set(ids)) == 22
    assert [a["ReplicationGroupId"] for a in _actions(world, ReplicationGroupIds=["RG"])] == ["rg"]
    assert [a["CacheClusterId"] for a in _actions(world, CacheClusterIds=["c03", "nope"])] == ["c03"]
    assert _actions(world, Engine="memcached") == [] and len(_actions(world, Engine="redis")) == 22
    assert _actions(world, ServiceUpdateName="elasticache-other") == []
    assert len(_actions(world, UpdateActionStatus=["not-applied"])) == 22
    assert _actions(world, UpdateActionStatus=["complete"]) == []
    now = world.clock.now()
    assert len(_actions(world, ServiceUpdateTimeRange={"StartTime": now - timedelta(hours=1)})) == 22
    assert _actions(world, ServiceUpdateTimeRange={"EndTime": now - timedelta(hours=1)}) == []
    assert "CacheNodeUpdateStatus" not in _actions(world, CacheClusterIds=["c00"])[0]
    updates = world.call("DescribeServiceUpdates", ServiceUpdateName=UPDATE, ServiceUpdateStatus=["available"])
    assert [u["ServiceUpdateName"] for u in updates["ServiceUpdates"]] == [UPDATE]
    assert world.call("DescribeServiceUpdates", ServiceUpdateStatus=["expired"])["ServiceUpdates"] == []
    world.clock.advance(timedelta(days=366))
    assert [u["ServiceUpdateName"] for u in
            world.call("DescribeServiceUpdates", ServiceUpdateStatus=["expired"])["ServiceUpdates"]] == [UPDATE]
    assert _actions(world, ServiceUpdateStatus=["available"]) == []
    refused = world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, CacheClusterIds=["c00"])
    assert "expired" in refused["UnprocessedUpdateActions"][0]["ErrorMessage"]


@pytest.mark.parametrize(("operation", "params", "code"), [
    ("DescribeServiceUpdates", {"ServiceUpdateName": "elasticache-nope"}, "ServiceUpdateNotFoundFault"),
    ("DescribeServiceUpdates", {"MaxRecords": 5}, "InvalidParameterValue"),
    ("DescribeServiceUpdates", {"Marker": "x"}, "InvalidParameterValue"),
    ("DescribeUpdateActions", {"CacheClusterIds": ["web"], "ReplicationGroupIds": ["rg"]},
     "InvalidParameterCombination"),
    ("DescribeUpdateActions", {"Engine": "oracle"}, "InvalidParameterValue"),
    ("DescribeUpdateActions", {"MaxRecords": 101}, "InvalidParameterValue"),
    ("BatchApplyUpdateAction", {"ServiceUpdateName": "elasticache-nope", "CacheClusterIds": ["web"]},
     "ServiceUpdateNotFoundFault"),
    ("BatchApplyUpdateAction", {"ServiceUpdateName": UPDATE}, "InvalidParameterValue"),
    ("BatchStopUpdateAction", {"ServiceUpdateName": "elasticache-nope", "CacheClusterIds": ["web"]},
     "ServiceUpdateNotFoundFault"),
    ("BatchStopUpdateAction", {"ServiceUpdateName": UPDATE}, "InvalidParameterValue"),
])
def test_errors(world: World, operation: str, params: dict[str, Any], code: str) -> None:
    _cluster(world)
    _install(world)
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code and 400 <= err.value.status < 500


def test_time_range_backwards_is_refused(world: World) -> None:
    now = world.clock.now()
    with pytest.raises(ApiError) as err:
        world.call("DescribeUpdateActions", ServiceUpdateTimeRange={"StartTime": now, "EndTime": now - timedelta(1)})
    assert err.value.code == "InvalidParameterValue"


def test_batch_reports_each_cache_it_could_not_process(world: World) -> None:
    _cluster(world)
    _group(world)
    _install(world)
    _cluster(world, "fresh")  # created on the new patch: nothing to update
    result = world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE,
                        CacheClusterIds=["ghost", "rg-002", "fresh", "web"], ReplicationGroupIds=["nope"])
    assert [a["CacheClusterId"] for a in result["ProcessedUpdateActions"]] == ["web"]
    assert {(u.get("CacheClusterId") or u.get("ReplicationGroupId"), u["ErrorType"])
            for u in result["UnprocessedUpdateActions"]} == {
        ("nope", "ReplicationGroupNotFoundFault"), ("ghost", "CacheClusterNotFound"),
        ("rg-002", "InvalidParameterValue"), ("fresh", "InvalidParameterValue")}


def test_actions_survive_a_restart_and_go_with_their_cache(world: World) -> None:
    _cluster(world)
    _install(world)
    w = world.restart()
    try:
        assert _action(w)["UpdateActionStatus"] == "not-applied"
        w.call("DeleteCacheCluster", CacheClusterId="web")
        w.settle()
        assert _actions(w) == []
        assert [u["ServiceUpdateName"] for u in w.call("DescribeServiceUpdates")["ServiceUpdates"]] == [UPDATE]
    finally:
        w.service.store.close()


def test_outputs_match_the_model(world: World) -> None:
    _cluster(world)
    _group(world)
    _install(world)
    ctx = world.service.services.context("123456789012", "us-east-1")
    h = world.service.query.handlers
    outputs = {
        "BatchApplyUpdateAction": h["BatchApplyUpdateAction"](
            ctx, {"ServiceUpdateName": UPDATE, "CacheClusterIds": ["web", "ghost"], "ReplicationGroupIds": ["rg"]}),
    }
    world.settle()
    outputs["BatchStopUpdateAction"] = h["BatchStopUpdateAction"](
        ctx, {"ServiceUpdateName": UPDATE, "ReplicationGroupIds": ["rg", "nope"]})
    outputs["DescribeServiceUpdates"] = h["DescribeServiceUpdates"](ctx, {})
    outputs["DescribeUpdateActions"] = h["DescribeUpdateActions"](ctx, {"ShowNodeLevelUpdateStatus": True})
    for operation, result in outputs.items():
        shape = world.service.api.operation(operation).output_shape  # type: ignore[union-attr]
        _check(result, shape, operation)
    actions = outputs["DescribeUpdateActions"]["UpdateActions"]
    assert {"NodeGroupUpdateStatus", "CacheNodeUpdateStatus"} <= {k for a in actions for k in a}
    assert outputs["BatchApplyUpdateAction"]["UnprocessedUpdateActions"]


def test_random_requests_never_fail_the_server(tmp_path: Path) -> None:
    """The four operations with random parameters (names and ids partly real, so the apply and
    stop paths run): never a 5xx, always well-formed XML, and every cache still converges."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from controlplane.query import Identity
    from tests.unit.controlplane.test_fuzz import EXAMPLES, _code
    from tests.unit.protocol.strategies import botocore_wire_pairs, input_value

    w = World(tmp_path, FakeRuntime({"redis": (OLD,)}))
    try:
        _cluster(w)
        _group(w)
        _install(w)
        names = ["DescribeServiceUpdates", "DescribeUpdateActions", "BatchApplyUpdateAction", "BatchStopUpdateAction"]
        seen: dict[str, int] = {}

        @settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            op = w.service.api.operation(data.draw(st.sampled_from(names)))
            assert op is not None and op.input_shape is not None
            params = data.draw(input_value(op.input_shape))
            if "ServiceUpdateName" in params or data.draw(st.booleans()):
                params["ServiceUpdateName"] = data.draw(st.sampled_from([UPDATE, params.get("ServiceUpdateName", "x")]))
            members = op.input_shape.members
            if "CacheClusterIds" in members and data.draw(st.booleans()):
                params["CacheClusterIds"] = data.draw(st.lists(st.sampled_from(["web", "rg-001", "x"]), max_size=3))
            if "ReplicationGroupIds" in members and data.draw(st.booleans()):
                params["ReplicationGroupIds"] = data.draw(st.lists(st.sampled_from(["rg", "RG", "y"]), max_size=3))
            pairs = [("Action", op.name), ("Version", "2015-02-02")]
            pairs += [p for p in botocore_wire_pairs(op, params) if p[0] not in ("Action", "Version")]
            status, body = w.service.query.dispatch(pairs, Identity("123456789012", "us-east-1"), "fuzz")
            assert status < 500, body[:500]
            outcome = "ok" if status < 300 else _code(body)
            seen[outcome] = seen.get(outcome, 0) + 1
            w.settle()

        run()
        assert seen.get("ok", 0) >= 5 and len(seen) >= 3, seen
        w.settle_until(lambda: all(c["CacheClusterStatus"] == "available"
                                   for c in w.call("DescribeCacheClusters")["CacheClusters"]))
    finally:
        w.service.store.close()


def test_an_engine_version_change_makes_the_action_not_applicable(world: World) -> None:
    _cluster(world)
    _install(world, redis=(OLD, NEW, "7.1.4"))
    world.call("ModifyCacheCluster", CacheClusterId="web", EngineVersion="7.1", ApplyImmediately=True)
    world.settle_until(lambda: _version(world, "web") == "7.1.4")
    world.settle_until(lambda: _action(world)["UpdateActionStatus"] == "not-applicable")
    refused = world.call("BatchApplyUpdateAction", ServiceUpdateName=UPDATE, CacheClusterIds=["web"])
    assert refused["UnprocessedUpdateActions"][0]["ErrorMessage"].startswith(f"Service update {UPDATE} does not apply")
    assert _version(world, "web") == "7.1.4"
