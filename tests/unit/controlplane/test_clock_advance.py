"""The time warp (reconciler/timewarp.py) on the fake clock: it stops just inside every window
start on the way, in order, enqueues everything there and waits for the control loop to go idle
(WorkQueue.wait_idle); windows fire as if the time had passed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from controlplane.clock import FakeClock
from controlplane.reconciler.timewarp import TimeWarp, WindowStart
from controlplane.reconciler.workqueue import WorkQueue
from controlplane.state.records import CacheCluster
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
GROUP = {"ReplicationGroupDescription": "d", **REDIS}
T0 = FakeClock().now()  # Thursday 2026-01-01 12:00 UTC
HOUR = timedelta(hours=1)


# ---- WorkQueue.wait_idle ---------------------------------------------------------------------

def test_an_empty_queue_is_idle_at_once() -> None:
    assert WorkQueue[str](lambda: 0.0).wait_idle(0)


def test_ready_and_processing_keys_are_not_idle() -> None:
    q = WorkQueue[str](lambda: 0.0)
    q.add("a")
    assert not q.wait_idle(0.05)  # ready
    key = q.get_nowait()
    assert key == "a" and not q.wait_idle(0.05)  # in a worker
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(q.wait_idle(10)))
    waiter.start()
    q.done("a")  # the waiter sees the worker finish
    waiter.join(timeout=10)
    assert result == [True]


def test_a_delayed_key_is_not_idle_until_processed() -> None:
    now = [100.0]
    q = WorkQueue[str](lambda: now[0])
    q.add_after("a", 30)
    assert not q.wait_idle(0.05)
    now[0] += 31  # due: ready now
    assert not q.wait_idle(0.05)
    assert q.get_nowait() == "a"
    q.done("a")
    assert q.wait_idle(0)


def test_a_closed_queue_does_not_wait() -> None:
    q = WorkQueue[str](lambda: 0.0)
    q.add("a")
    q.close()
    assert not q.wait_idle(30)  # returns at once: no worker will take the key


@pytest.fixture
def running(world: World) -> Iterator[World]:
    """The world with the control loop's worker threads running (stopped afterwards)."""
    world.service.controller.start()
    try:
        yield world
    finally:
        world.service.controller.stop()


def test_controller_wait_idle_waits_for_the_workers(running: World) -> None:
    running.call("CreateCacheCluster", CacheClusterId="web", NumCacheNodes=1, **REDIS)
    assert running.service.controller.wait_idle(10)
    cluster = running.call("DescribeCacheClusters", CacheClusterId="web")["CacheClusters"][0]
    assert cluster["CacheClusterStatus"] == "available"


# ---- stepping through windows ----------------------------------------------------------------

class RecordingLoop:
    """A control loop that notes when (on the clock) it was asked to act, and settles the world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.enqueued: list[datetime] = []
        self.waited: list[datetime] = []

    def enqueue_all(self) -> None:
        self.enqueued.append(self.world.clock.now())
        self.world.service.controller.enqueue_all()

    def wait_idle(self, timeout: float) -> bool:
        self.waited.append(self.world.clock.now())
        self.world.settle()
        return True


def _warp(world: World) -> tuple[TimeWarp, RecordingLoop]:
    loop = RecordingLoop(world)
    return TimeWarp(world.service.store, loop, world.clock, step_timeout=5), loop


def test_advance_stops_at_each_window_start_in_order(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="a", PreferredMaintenanceWindow="thu:13:00-thu:14:00",
               SnapshotWindow="15:00-16:00", SnapshotRetentionLimit=2, NumCacheNodes=1, **REDIS)
    # No backups kept: its snapshot window does not fire.
    world.call("CreateCacheCluster", CacheClusterId="b", PreferredMaintenanceWindow="fri:02:00-fri:03:00",
               SnapshotWindow="16:00-17:00", NumCacheNodes=1, **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               PreferredMaintenanceWindow="thu:13:00-thu:14:00")
    # A group: its windows once, not its members'.
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2, SnapshotRetentionLimit=1,
               PreferredMaintenanceWindow="sat:01:00-sat:02:00", SnapshotWindow="20:00-21:00", **GROUP)
    world.settle()
    warp, loop = _warp(world)

    done = warp.advance(2 * 86400)

    def at(days: int, hour: int) -> datetime:
        return T0.replace(hour=hour) + timedelta(days=days)

    expected = [
        WindowStart("cache-cluster/a", "thu:13:00-thu:14:00", at(0, 13)),
        WindowStart("cache-cluster/mc", "thu:13:00-thu:14:00", at(0, 13)),
        WindowStart("cache-cluster/a", "15:00-16:00", at(0, 15)),
        WindowStart("replication-group/rg", "20:00-21:00", at(0, 20)),
        WindowStart("cache-cluster/b", "fri:02:00-fri:03:00", at(1, 2)),
        WindowStart("cache-cluster/a", "15:00-16:00", at(1, 15)),
        WindowStart("replication-group/rg", "20:00-21:00", at(1, 20)),
        WindowStart("replication-group/rg", "sat:01:00-sat:02:00", at(2, 1)),
    ]
    assert sorted(done.windows, key=lambda w: (w.start, w.resource)) == done.windows == expected
    stops = sorted({w.start for w in expected})
    second = timedelta(seconds=1)
    # One stop per distinct start, just inside it, and the last at the target.
    assert loop.waited == [*(s + second for s in stops), T0 + timedelta(days=2)]
    assert loop.enqueued == [*(s + second for s in stops), T0 + timedelta(days=2)]
    assert done.now == world.clock.now() == T0 + timedelta(days=2)
    assert done.offset == timedelta(days=2)


def test_a_window_starting_right_before_the_target_stops_at_the_target(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="a", PreferredMaintenanceWindow="thu:13:00-thu:14:00",
               NumCacheNodes=1, **REDIS)
    warp, loop = _warp(world)
    done = warp.advance(3600.5)  # 13:00:00.5: the start is passed, but not by a whole second
    assert [w.start for w in done.windows] == [T0 + HOUR]
    assert loop.waited == [T0 + timedelta(seconds=3600.5)] * 2 and done.now == loop.waited[0]
    # A start exactly at the target is reached (the clock lands inside the window), once.
    next_week = T0 + HOUR + timedelta(days=7)
    assert [w.start for w in warp.advance(7 * 86400 - 0.5).windows] == [next_week]
    assert loop.waited[-1] == next_week == world.clock.now()
    assert warp.advance(1).windows == []


def test_nothing_to_stop_at_moves_straight_to_the_target(world: World) -> None:
    warp, loop = _warp(world)
    done = warp.advance(400 * 86400)
    assert done.windows == [] and loop.waited == loop.enqueued == [T0 + timedelta(days=400)]


@pytest.mark.parametrize("seconds", [0, -1, 400 * 86400 + 1, float("nan"), float("inf")])
def test_advance_refuses_bad_amounts(world: World, seconds: float) -> None:
    warp, loop = _warp(world)
    with pytest.raises(ValueError, match="400 days"):
        warp.advance(seconds)
    assert world.clock.now() == T0 and loop.enqueued == []


def test_a_pending_change_is_applied_in_the_window_the_advance_passes(running: World) -> None:
    """With the real control loop: the maintenance window the clock steps into carries out the
    pending node type change; outside it nothing changes."""
    world = running
    world.call("CreateCacheCluster", CacheClusterId="r", PreferredMaintenanceWindow="thu:13:00-thu:14:00",
               NumCacheNodes=1, **REDIS)
    assert world.service.controller.wait_idle(10)
    world.call("ModifyCacheCluster", CacheClusterId="r", CacheNodeType="cache.t3.small")
    assert world.service.controller.wait_idle(10)

    def node_type() -> str:
        cluster = world.call("DescribeCacheClusters", CacheClusterId="r")["CacheClusters"][0]
        return str(cluster["CacheNodeType"])

    assert node_type() == "cache.t3.micro"
    warp = TimeWarp(world.service.store, world.service.controller, world.clock, step_timeout=10)
    assert warp.advance(1800).windows == [] and node_type() == "cache.t3.micro"  # 12:30: not yet
    done = warp.advance(2 * 3600)  # through 13:00 to 14:30, after the window
    assert [w.window for w in done.windows] == ["thu:13:00-thu:14:00"]
    assert node_type() == "cache.t3.small"


def test_an_unreadable_window_is_skipped_not_a_refusal(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="a", PreferredMaintenanceWindow="thu:13:00-thu:14:00",
               NumCacheNodes=1, **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="b", NumCacheNodes=1, **REDIS)
    store = world.service.store
    bad = next(r for r in store.records(CacheCluster) if r.id == "b")

    def garble(rec: CacheCluster) -> None:
        rec.spec.maintenance_window = "whenever"

    store.update(bad.key, CacheCluster, garble)
    warp, _ = _warp(world)
    assert [w.resource for w in warp.advance(7200).windows] == ["cache-cluster/a"]
