"""How fast a cache cluster's life moves on the fake runtime: no fixed sleeps between a node's
report and its status, and a delete is one pass of the control loop."""

from __future__ import annotations

import time

from controlplane.reconciler.nodes import READY_WAIT
from engine.runtime.base import PROBE_PAUSE
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 1}
NODE = "123456789012-us-east-1-web-0001"


def _status(world: World, cluster_id: str) -> str:
    return str(world.call("DescribeCacheClusters", CacheClusterId=cluster_id)["CacheClusters"][0]
               ["CacheClusterStatus"])


def test_probes_wait_for_the_nodes_own_ready_report_between_them(world: World) -> None:
    world.runtime.set_ready_after(2)
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    assert _status(world, "web") == "available"
    calls = [m for m, n in world.runtime.calls if n == NODE and m in ("start", "probe", "wait_ready")]
    # Refused twice, each time followed by a wait that the node's report (or the pause) ends;
    # available only after a probe that answered.
    assert calls == ["start", "probe", "wait_ready", "probe", "wait_ready", "probe"]


def test_a_ready_report_ends_the_pause_but_only_an_answer_makes_it_available(world: World) -> None:
    world.runtime.set_ready_after(3)
    reports: list[str] = []

    def always_ready(name: str, timeout: float) -> bool:  # a report that comes too early
        reports.append(name)
        return True

    world.runtime.wait_ready = always_ready  # type: ignore[method-assign]
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    assert _status(world, "web") == "available"
    assert world.runtime.calls_of("probe").count(NODE) == 4  # three refused, one answered
    assert reports == [NODE] * 3


def test_a_node_that_never_reports_is_probed_at_the_runtimes_pace(world: World) -> None:
    world.runtime.set_ready_after(3)
    world.runtime.wait_ready = _no_reports(world)  # type: ignore[method-assign]
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    started = time.monotonic()
    world.settle()
    elapsed = time.monotonic() - started
    assert _status(world, "web") == "available"
    assert elapsed >= 3 * PROBE_PAUSE * 0.9  # three pauses, none skipped
    assert world.runtime.calls_of("probe").count(NODE) == 4


def _no_reports(world: World):  # type: ignore[no-untyped-def]
    """A runtime whose nodes never report readiness (memcached, docker): a plain pause."""

    def wait_ready(name: str, timeout: float) -> bool:
        world.runtime.calls.append(("wait_ready", name))
        # The reconciler offers what is left of its short in-pass wait, more than the runtime's
        # pause: the runtime, not the reconciler, sets the pace.
        assert PROBE_PAUSE < timeout <= READY_WAIT
        time.sleep(min(timeout, PROBE_PAUSE))
        return False

    return wait_ready


def test_delete_is_one_pass_and_the_killed_nodes_exit_wakes_nobody(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    world.call("DeleteCacheCluster", CacheClusterId="web")
    # The node is disowned before it is killed: its exit does not queue the key again.
    assert world.settle() == 1
    assert world.runtime.calls_of("kill")[-1] == NODE and world.runtime.calls_of("remove")[-1] == NODE
    assert NODE not in world.service.infra.node_owner
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_a_crashed_node_of_a_live_cluster_still_wakes_its_owner(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    world.runtime.crash(NODE)
    assert world.service.controller.queue.pending() == 1  # the exit listener queued the owner
    world.settle()
    assert world.runtime.calls_of("start").count(NODE) == 2
    assert _status(world, "web") == "available"


def test_one_status_write_before_the_node_starts(world: World) -> None:
    store = world.service.store
    writes: list[str] = []
    update = store.update

    def counting_update(key, model, change):  # type: ignore[no-untyped-def]
        writes.append(key.id)
        return update(key, model, change)

    store.update = counting_update  # type: ignore[method-assign]
    start = world.runtime.start

    def start_and_count(config):  # type: ignore[no-untyped-def]
        writes.append("start")
        return start(config)

    world.runtime.start = start_and_count  # type: ignore[method-assign]
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    # The node's slot, its address and the chosen version go in one write; then the node starts.
    assert writes.index("start") == 1
    assert _status(world, "web") == "available"
    world.service.controller.enqueue_all()
    world.settle()
    assert world.events("web") == [
        "Engine version 7.1.0 is not installed on this machine; the nodes run redis 7.0.15",
        "Added cache node 0001 in availability zone " + world.call(
            "DescribeCacheClusters", CacheClusterId="web")["CacheClusters"][0]["PreferredAvailabilityZone"],
        "Cache cluster created",
    ]


def test_a_changed_version_without_new_nodes_is_still_recorded(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", EngineVersion="6.2", **REDIS)
    world.settle()
    assert world.events("web")[0] == "Engine version 6.2.6 runs as redis 6.2.14 on this machine"
    world.call("ModifyCacheCluster", CacheClusterId="web", EngineVersion="7.0", ApplyImmediately=True)
    world.settle()
    cluster = world.call("DescribeCacheClusters", CacheClusterId="web")["CacheClusters"][0]
    assert cluster["EngineVersion"] == "7.0.7" and cluster["CacheClusterStatus"] == "available"
    assert world.runtime.config_of(NODE).version == "7.0.15"
    # A planned replacement reads as AWS writes an engine upgrade, never as a recovery.
    assert world.events("web")[-4:] == ["Engine version 7.0.7 runs as redis 7.0.15 on this machine",
                                        "Cache node 0001 shutdown", "Cache node 0001 restarted",
                                        "Cache cluster patched"]
    assert not [e for e in world.events("web") if "ecover" in e]
