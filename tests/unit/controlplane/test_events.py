"""DescribeEvents time windows at their limits (found by the fuzz test: a huge Duration was a 500)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.harness import ApiError
from tests.unit.controlplane.conftest import World


def test_the_14_days_kept_and_no_further(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
               NumCacheNodes=1)
    world.settle()
    every = world.call("DescribeEvents", Duration=20160)["Events"]  # the 14 days kept
    assert "Cache cluster created" in [e["Message"] for e in every]
    # Beyond them AWS refuses, as for a huge Duration (beyond any datetime) and a StartTime older than 14 days.
    for params in ({"Duration": 20161}, {"Duration": 1065047761}, {"Duration": -5},
                   {"StartTime": world.clock.now() - timedelta(days=14, minutes=1)}):
        with pytest.raises(ApiError) as err:
            world.call("DescribeEvents", **params)
        assert err.value.code == "InvalidParameterValue", params
        assert "14 days" in err.value.message or "Duration" in err.value.message
    recent = world.call("DescribeEvents", StartTime=world.clock.now() - timedelta(days=13))["Events"]
    assert recent == every
