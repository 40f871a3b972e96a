"""AWS-faithful details: the Version parameter, and NumCacheNodes' message for the value given."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest

from controlplane.query import Identity
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World


def _send(world: World, pairs: list[tuple[str, str]]) -> tuple[int, str, str]:
    status, body = world.service.query.dispatch(pairs, Identity("123456789012", "us-east-1"), "r")
    root = ElementTree.fromstring(body)
    code, message = root.find(".//{*}Code"), root.find(".//{*}Message")
    return status, code.text or "" if code is not None else "", message.text or "" if message is not None else ""


@pytest.mark.parametrize(("version", "shown"), [
    ([("Version", "2014-09-30")], "2014-09-30"),
    ([("Version", "")], "NO_VERSION_SPECIFIED"),
    ([], "NO_VERSION_SPECIFIED"),
])
def test_another_version_or_none_is_refused_as_aws_does(world: World, version: list[tuple[str, str]],
                                                        shown: str) -> None:
    pairs = [("Action", "CreateCacheCluster"), *version, ("CacheClusterId", "web"), ("Engine", "redis"),
             ("CacheNodeType", "cache.t3.micro")]
    status, code, message = _send(world, pairs)
    assert (status, code) == (400, "InvalidAction")
    assert message == f"Could not find operation CreateCacheCluster for version {shown}"
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []  # nothing was created
    status, code, _ = _send(world, [("Action", "DescribeCacheClusters"), ("Version", "2015-02-02")])
    assert (status, code) == (200, "")


@pytest.mark.parametrize(("count", "expected"), [
    (0, "Invalid NumCacheNodes: 0. The number of cache nodes must be at least 1."),
    (-3, "Invalid NumCacheNodes: -3. The number of cache nodes must be at least 1."),
    (2, "Cannot create a Redis cluster with a NumCacheNodes parameter greater than 1."),
])
def test_num_cache_nodes_message_fits_the_value(world: World, count: int, expected: str) -> None:
    params: dict[str, Any] = {"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
                              "NumCacheNodes": count}
    with pytest.raises(ApiError) as err:
        world.call("CreateCacheCluster", **params)
    assert (err.value.code, err.value.message) == ("InvalidParameterValue", expected)
