"""The failover state machine's time (overall timeout, cooldown, per-step times kept in status),
its resumption after a restart, its observer, and reconciles that requeue instead of waiting:
on the fake runtime and the fake clock, no sleeps."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from controlplane.reconciler.errors import Requeue
from controlplane.reconciler.replication_groups import Transition
from controlplane.state.records import FailoverState, FailoverStep, PendingChanges, ReplicationGroup
from tests.unit.controlplane.conftest import World

NODE = "123456789012-us-east-1-{}-0001"
BASIC = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}


def _make(world: World, clusters: int = 3) -> ReplicationGroup:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=clusters,
               AutomaticFailoverEnabled=True, **BASIC)
    world.settle_until(lambda: _rg(world).api_status() == "available")
    return _rg(world)


def _rg(world: World) -> ReplicationGroup:
    return world.service.store.records(ReplicationGroup)[0]


def _rg_events(world: World) -> list[str]:
    return [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group",
                                             SourceIdentifier="rg")["Events"]]


def _completed(world: World) -> list[str]:
    return [e for e in _rg_events(world) if e.startswith("Failover from primary node")]


def _observe(world: World) -> list[Transition]:
    seen: list[Transition] = []
    world.service.groups.failover.observer = seen.append
    return seen


def test_a_promotion_that_never_confirms_aborts_after_the_timeout(world: World) -> None:
    _make(world)
    seen = _observe(world)
    world.service.groups.failover.timeout = 3.0  # the setting failover_timeout; shorter than a promotion wait
    real_replicate = world.runtime.replicate

    def ignores_promotion(name: str, primary: Any) -> None:
        if primary is not None:  # REPLICAOF NO ONE is accepted but the role never changes
            real_replicate(name, primary)

    world.runtime.replicate = ignores_promotion  # type: ignore[method-assign]
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    state = _rg(world).status.failover
    assert state is not None and state.step == FailoverStep.WAIT_PROMOTION and state.candidate == "rg-002"
    assert state.entered_at == world.clock.now()  # the step's entry time is kept in status
    timeout = world.service.groups.failover.timeout
    elapsed = 0.0
    while _rg(world).status.failover is not None and elapsed <= timeout + 1:
        world.clock.advance(0.5)
        elapsed += 0.5
        world.settle()
        if elapsed < timeout:
            assert not any("not completed" in e for e in _rg_events(world))
    assert _rg(world).status.failover is None
    assert f"Failover of primary node rg-001 aborted: not completed within {timeout:g} s" in _rg_events(world)
    assert not _completed(world)
    assert seen[-2].step == FailoverStep.WAIT_PROMOTION  # no other candidate was tried
    assert seen[-1].step == FailoverStep.DONE and "aborted" in seen[-1].note
    assert _rg(world).status.last_failover_at == world.clock.now()  # the cooldown counts from the abort


def test_a_second_primary_death_within_the_cooldown_waits_for_it(world: World) -> None:
    _make(world)
    cooldown = world.service.groups.failover.cooldown
    assert cooldown > 0
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    assert _rg(world).status.primary == "rg-002"
    starts = world.runtime.calls_of("start").count(NODE.format("rg-002"))
    world.runtime.crash(NODE.format("rg-002"))
    world.settle()
    assert _rg(world).status.primary == "rg-002" and _rg(world).status.failover is None
    assert len(_completed(world)) == 1
    assert any(e.startswith("Failover of primary node rg-002 deferred") for e in _rg_events(world))
    # Not restarted in place meanwhile: the failover waits for the cooldown.
    assert world.runtime.calls_of("start").count(NODE.format("rg-002")) == starts
    world.clock.advance(cooldown / 2)
    world.settle()
    assert len(_completed(world)) == 1
    world.clock.advance(cooldown / 2 + 0.01)
    world.settle()
    assert _rg(world).status.primary in ("rg-001", "rg-003")
    assert _completed(world)[-1].startswith("Failover from primary node rg-002 to replica node")
    assert sum(e.startswith("Failover of primary node rg-002 deferred") for e in _rg_events(world)) == 1


def test_test_failover_is_not_held_by_the_cooldown(world: World) -> None:
    _make(world)
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    world.settle()
    assert len(_completed(world)) == 2  # AWS limits TestFailover by its own rate, not a cooldown


def test_restart_in_wait_promotion_resumes_from_that_step(world: World) -> None:
    _make(world)
    world.runtime.kill(NODE.format("rg-001"))  # fenced, and rg-002 promoted, before the crash
    world.runtime.replicate(NODE.format("rg-002"), None)
    now = world.clock.now()

    def mid_failover(r: ReplicationGroup) -> None:
        r.status.failover = FailoverState(step=FailoverStep.WAIT_PROMOTION, reason="automatic",
                                          old_primary="rg-001", candidate="rg-002", started_at=now,
                                          entered_at=now)

    world.service.store.update(_rg(world).key, ReplicationGroup, mid_failover)
    again = world.restart()
    seen = _observe(again)
    again.service.controller.enqueue_all()
    again.settle()
    steps = [(t.previous, t.step) for t in seen]
    assert steps[0] == (FailoverStep.WAIT_PROMOTION, FailoverStep.REPOINT)  # not begun again
    assert steps[-1][1] == FailoverStep.DONE
    assert again.runtime.calls_of("kill") == [NODE.format("rg-001")]  # fenced once, before the restart
    assert _rg(again).status.primary == "rg-002" and _rg(again).status.failover is None
    again.service.store.close()


def test_a_failover_timed_out_during_downtime_never_restarts_the_fenced_primary(world: World) -> None:
    """The control plane stopped after fencing the primary and came back after the overall
    timeout: the failover is aborted and decided again, and the old primary, whose data is older
    than its replicas', is not restarted in place as a master."""
    _make(world)
    world.runtime.kill(NODE.format("rg-001"))  # fenced before the control plane stopped
    now = world.clock.now()

    def mid_failover(r: ReplicationGroup) -> None:
        r.status.failover = FailoverState(step=FailoverStep.SELECT, reason="automatic", old_primary="rg-001",
                                          started_at=now, entered_at=now)

    world.service.store.update(_rg(world).key, ReplicationGroup, mid_failover)
    again = world.restart()
    again.clock.advance(again.service.groups.failover.timeout + 60)  # down for longer than the timeout
    again.service.controller.enqueue_all()
    again.settle()
    assert any("aborted: not completed within" in e for e in _rg_events(again))
    for _ in range(10):  # through the cooldown, bounded
        if _completed(again):
            break
        again.clock.advance(again.service.groups.failover.cooldown)
        again.service.controller.enqueue_all()
        again.settle()
    assert _rg(again).status.primary in ("rg-002", "rg-003")
    assert _completed(again)[-1].startswith("Failover from primary node rg-001 to replica node")
    again.service.store.close()


def test_every_transition_is_observed_in_order(world: World) -> None:
    _make(world)
    seen = _observe(world)
    world.runtime.crash(NODE.format("rg-001"))
    world.settle()
    assert [t.step for t in seen] == list(FailoverStep)
    assert seen[0].previous is None and all(t.reason == "automatic" for t in seen)
    assert all(a.step == b.previous for a, b in itertools.pairwise(seen))


def test_a_replica_that_never_gets_ready_requeues_instead_of_parking_the_worker(world: World) -> None:
    world.runtime.set_offset(NODE.format("rg-002"), -1)  # link up, the stream never arrives
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2, **BASIC)
    key = _rg(world).key
    started = time.monotonic()
    with pytest.raises(Requeue) as requeue:
        world.service.groups.reconcile(key)
    assert time.monotonic() - started < 1.0  # a short bounded wait, not the old 3 s
    assert 0 < requeue.value.delay <= 0.1
    world.settle()
    assert world.service.controller.queue.pending() == 1  # back later, on the injected clock
    assert world.call("DescribeReplicationGroups")["ReplicationGroups"][0]["Status"] == "creating"


def test_pending_changes_applied_in_the_window_stay_in_spec(world: World) -> None:
    _make(world)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", CacheNodeType="cache.t3.small",
               PreferredMaintenanceWindow="thu:13:00-thu:14:00")
    world.settle()
    members = world.call("DescribeCacheClusters")["CacheClusters"]
    assert all(m["PendingModifiedValues"] == {"CacheNodeType": "cache.t3.small"} for m in members)
    world.clock.advance(3600 + 60)  # into the window
    world.service.controller.enqueue_all()
    world.settle()
    group = world.call("DescribeReplicationGroups")["ReplicationGroups"][0]
    assert group["CacheNodeType"] == "cache.t3.small" and group["Status"] == "available"
    members = world.call("DescribeCacheClusters")["CacheClusters"]
    assert all(m["PendingModifiedValues"] == {} and m["CacheNodeType"] == "cache.t3.small" for m in members)
    assert world.runtime.config_of(NODE.format("rg-002")).memory_mb == int(1.37 * 1024)
    rg = _rg(world)
    assert rg.spec.pending == PendingChanges(node_type="cache.t3.small", seq=1)  # the handler's, untouched
    assert rg.spec.node_type == "cache.t3.micro" and rg.status.pending_applied == rg.spec.pending
    assert "Applying pending modifications in the maintenance window" in _rg_events(world)


def test_members_added_after_the_window_are_what_the_group_runs(world: World) -> None:
    """A member added after the window carried out a node type change gets the type the group
    runs (and shows), and a joining cluster naming that type is accepted."""
    _make(world, clusters=2)
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", CacheNodeType="cache.t3.small",
               PreferredMaintenanceWindow="thu:13:00-thu:14:00")
    world.clock.advance(3600 + 60)
    world.service.controller.enqueue_all()
    world.settle_until(lambda: _rg(world).api_status() == "available")
    world.call("IncreaseReplicaCount", ReplicationGroupId="rg", NewReplicaCount=2, ApplyImmediately=True)
    world.settle_until(lambda: _rg(world).api_status() == "available")
    world.call("CreateCacheCluster", CacheClusterId="joiner", ReplicationGroupId="rg",
               CacheNodeType="cache.t3.small")
    world.settle()
    members = world.call("DescribeCacheClusters")["CacheClusters"]
    assert len(members) == 4
    assert all(m["CacheNodeType"] == "cache.t3.small" and m["PendingModifiedValues"] == {} for m in members)
    for node in ("rg-003", "joiner"):
        assert world.runtime.config_of(NODE.format(node)).memory_mb == int(1.37 * 1024)
