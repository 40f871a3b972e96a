"""Fault injection on the fake runtime: each fault is an event, and the loop handles it."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model.errors import CacheClusterNotFoundFault, InvalidParameterValueException
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_replication_groups import NODE, _make, _roles


def test_killed_node_of_a_plain_cluster_is_recovered(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    message = world.service.faults.node("123456789012", "us-east-1", "web", "0001", "kill")
    assert message == "Fault injection: cache node 0001 killed"
    world.settle()
    events = world.events("web")
    assert events[-3:] == [message, "Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"]


def test_frozen_primary_fails_over_and_resume_is_an_event(world: World) -> None:
    _make(world)
    faults = world.service.faults
    faults.node("123456789012", "us-east-1", "rg-001", "0001", "pause")
    health = world.service.health
    health.probe_all()
    world.clock.advance(1.1)
    health.probe_all()
    world.settle()
    assert _roles(world)["rg-002"] == "primary"
    assert "Fault injection: cache node 0001 frozen" in world.events("rg-001")


def test_az_interruption_fails_over_to_another_zone_and_recovers_after(world: World) -> None:
    _make(world)  # members spread over us-east-1a, b, c: the primary rg-001 is in us-east-1a
    faults = world.service.faults
    hit = faults.interrupt_az("us-east-1a", 30)
    assert hit == ["rg-001/0001"]
    world.settle()
    assert _roles(world)["rg-002"] == "primary"
    starts = world.runtime.calls_of("start").count(NODE.format("rg-001"))
    world.clock.advance(10)
    world.service.controller.enqueue_all()
    world.settle()
    assert world.runtime.calls_of("start").count(NODE.format("rg-001")) == starts  # zone still down
    world.clock.advance(21)
    world.service.controller.enqueue_all()
    world.settle()
    assert world.runtime.calls_of("start").count(NODE.format("rg-001")) == starts + 1
    assert _roles(world) == {"rg-001": "replica", "rg-002": "primary", "rg-003": "replica"}
    assert any("availability zone us-east-1a interrupted" in e for e in world.events("rg-001"))


def _cluster(world: World, cluster_id: str) -> dict[str, Any]:
    found: dict[str, Any] = world.call("DescribeCacheClusters", CacheClusterId=cluster_id,
                                       ShowCacheNodeInfo=True)["CacheClusters"][0]
    return found


def test_nodes_down_in_an_interrupted_zone_do_not_read_available(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
               PreferredAvailabilityZone="us-east-1a")
    _make(world)  # rg-001 (the primary) in us-east-1a, rg-002 in b, rg-003 in c
    world.settle()
    faults = world.service.faults
    faults.interrupt_az("us-east-1b", 30)  # a replica's zone
    faults.interrupt_az("us-east-1a", 30)
    world.settle()
    web = _cluster(world, "web")
    assert web["CacheClusterStatus"] == "rebooting cache cluster nodes"
    assert web["CacheNodes"][0]["CacheNodeStatus"] == "rebooting"
    replica = _cluster(world, "rg-002")
    assert (replica["CacheClusterStatus"], replica["CacheNodes"][0]["CacheNodeStatus"]) == (
        "rebooting cache cluster nodes", "rebooting")
    assert _roles(world)["rg-003"] == "primary"  # the failover moved the primary out of the zones
    assert _cluster(world, "rg-003")["CacheClusterStatus"] == "available"
    assert world.events("web")[-1] == "Recovering cache nodes 0001"
    assert world.events("rg-002")[-1] == "Recovering cache nodes 0001"

    world.clock.advance(31)  # the interruption is over: the nodes come back and read available again
    world.service.controller.enqueue_all()
    world.settle()
    for cluster_id in ("web", "rg-001", "rg-002", "rg-003"):
        cluster = _cluster(world, cluster_id)
        assert (cluster["CacheClusterStatus"], cluster["CacheNodes"][0]["CacheNodeStatus"]) == (
            "available", "available"), cluster_id
    assert world.events("web")[-1] == "Finished recovery for cache nodes 0001"
    assert world.events("rg-002")[-1] == "Finished recovery for cache nodes 0001"


def test_bad_faults_are_refused(world: World) -> None:
    with pytest.raises(CacheClusterNotFoundFault):
        world.service.faults.node("123456789012", "us-east-1", "nope", "0001", "kill")
    with pytest.raises(InvalidParameterValueException):
        world.service.faults.node("123456789012", "us-east-1", "nope", "0001", "explode")
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    with pytest.raises(InvalidParameterValueException, match="0009"):
        world.service.faults.node("123456789012", "us-east-1", "web", "0009", "kill")
    with pytest.raises(InvalidParameterValueException):
        world.service.faults.interrupt_az("us-east-1a", 0)


def test_a_frozen_standalone_node_is_recovered_and_leaves_auto_discovery(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=2)
    world.settle()
    name = "123456789012-us-east-1-mc-0002"
    world.runtime.hang(name)
    health = world.service.health
    health.probe_all()
    world.clock.advance(1.1)
    health.probe_all()  # down: the cluster is enqueued
    world.runtime.unhang(name)  # (a restarted process answers again)
    world.settle()
    assert name in world.runtime.calls_of("kill")
    assert world.runtime.calls_of("start").count(name) == 2
    assert world.events("mc")[-2:] == ["Recovering cache nodes 0002", "Finished recovery for cache nodes 0002"]
