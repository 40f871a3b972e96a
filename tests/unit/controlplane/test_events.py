"""DescribeEvents time windows at their limits (found by the fuzz test: a huge Duration was a 500)."""

from __future__ import annotations

from tests.unit.controlplane.conftest import World


def test_a_huge_duration_is_the_whole_retention(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
               NumCacheNodes=1)
    world.settle()
    every = world.call("DescribeEvents", Duration=1065047761)["Events"]  # beyond any datetime
    assert "Cache cluster created" in [e["Message"] for e in every]
    assert world.call("DescribeEvents", Duration=20160)["Events"] == every  # the 14 days kept
