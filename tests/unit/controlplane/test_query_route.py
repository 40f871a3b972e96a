"""The Query route over HTTP (the ASGI app, the fake runtime): the router and the handler read
one and the same request, so a request taken down the read-only path never changes state."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route

from controlplane.state.records import CacheCluster
from tests.unit.controlplane.conftest import World

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))


class Client:
    """The Query route as an ASGI app, called the way an HTTP client calls it."""

    def __init__(self, world: World) -> None:
        self.app = Starlette(routes=[Route("/", world.service.query.endpoint, methods=["GET", "POST"])])

    def post(self, pairs: list[tuple[str, str]]) -> tuple[int, str]:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await client.post("/", content=urlencode(pairs), headers={
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})

        reply = asyncio.run(call())
        return reply.status_code, reply.text


def _state(world: World) -> list[Any]:
    return [(r.key, r.generation, r.spec.model_dump()) for r in world.service.store.records(CacheCluster)]


@pytest.fixture
def running(world: World) -> Iterator[tuple[World, Client]]:
    world.call("CreateCacheCluster", CacheClusterId="keep", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    yield world, Client(world)


def test_a_second_action_is_refused_and_changes_nothing(running: tuple[World, Client]) -> None:
    world, client = running
    before = _state(world)
    # Was served as a DeleteCacheCluster: the router read the first Action, the parser the last.
    status, body = client.post([("Action", "DescribeCacheClusters"), ("Action", "DeleteCacheCluster"),
                                  ("Version", "2015-02-02"), ("CacheClusterId", "keep")])
    assert status == 400 and "InvalidParameterValue" in body and "Action" in body
    world.settle()
    assert _state(world) == before
    status, body = client.post([("Action", "DeleteCacheCluster"), ("Action", "DescribeCacheClusters"),
                                  ("Version", "2015-02-02"), ("CacheClusterId", "keep")])
    assert status == 400
    world.settle()
    assert _state(world) == before


def test_a_scalar_named_twice_is_refused_and_changes_nothing(running: tuple[World, Client]) -> None:
    world, client = running
    before = _state(world)
    status, body = client.post([("Action", "ModifyCacheCluster"), ("Version", "2015-02-02"),
                                  ("CacheClusterId", "keep"), ("ApplyImmediately", "true"),
                                  ("SnapshotRetentionLimit", "3"), ("SnapshotRetentionLimit", "5")])
    assert status == 400 and "SnapshotRetentionLimit" in body
    world.settle()
    assert _state(world) == before
    # The same request once: accepted, so the refusal above was for the repetition alone.
    status, _ = client.post([("Action", "ModifyCacheCluster"), ("Version", "2015-02-02"),
                               ("CacheClusterId", "keep"), ("ApplyImmediately", "true"),
                               ("SnapshotRetentionLimit", "3")])
    assert status == 200
    assert _state(world) != before


_ACTIONS = ["DescribeCacheClusters", "DescribeReplicationGroups", "ListTagsForResource",
            "DescribeCacheEngineVersions", "DeleteCacheCluster", "RebootCacheCluster", "ModifyCacheCluster",
            "AddTagsToResource", "CreateCacheCluster", ""]
_PAIRS = st.one_of(
    st.tuples(st.just("Action"), st.sampled_from(_ACTIONS)),
    st.tuples(st.just("Version"), st.sampled_from(["2015-02-02", ""])),
    st.tuples(st.just("CacheClusterId"), st.sampled_from(["keep", "other"])),
    st.tuples(st.just("CacheNodeIdsToReboot.CacheNodeId.1"), st.just("0001")),
    st.tuples(st.just("ApplyImmediately"), st.just("true")),
    st.tuples(st.just("SnapshotRetentionLimit"), st.sampled_from(["1", "2"])),
    st.tuples(st.just("ResourceName"), st.just("arn:aws:elasticache:us-east-1:123456789012:cluster:keep")),
    st.tuples(st.just("Tags.Tag.1.Key"), st.just("k")),
    st.tuples(st.just("Engine"), st.just("redis")),
    st.tuples(st.just("CacheNodeType"), st.just("cache.t3.micro")),
)


def test_fuzz_read_only_path_never_changes_state(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.call("CreateCacheCluster", CacheClusterId="keep", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    query = world.service.query
    seen = {"read-only": 0, "other": 0}

    # A well-formed head (a read-only or changing Action with the right Version) in most examples:
    # since a missing Version is refused before routing, random pairs alone rarely reach either path.
    head = st.lists(st.sampled_from([("Action", a) for a in _ACTIONS if a] + [("Version", "2015-02-02")]),
                    max_size=2, unique=True)

    @settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=os.environ.get("CI", "").lower() == "true")
    @given(pairs=st.tuples(head, st.lists(_PAIRS, min_size=1, max_size=8)).map(lambda t: t[0] + t[1]))
    def run(pairs: list[tuple[str, str]]) -> None:
        read = query.read(pairs)
        read_only = not isinstance(read, Exception) and read.operation in query.inline_operations
        before = _state(world)
        status, body = client.post(pairs)
        assert status < 500 or "NotImplemented" in body, body[:300]
        if read_only:
            seen["read-only"] += 1
            world.settle()
            assert _state(world) == before, f"a request routed as read-only changed state: {pairs}"
        else:
            seen["other"] += 1
            world.settle()

    client = Client(world)
    run()
    world.service.store.close()
    assert seen["read-only"] > 0 and seen["other"] > 0, seen


def test_a_request_the_parser_chokes_on_is_an_internal_failure(running: tuple[World, Client],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _world, client = running

    def broken(*_: Any) -> Any:
        raise RuntimeError("a parser bug")

    monkeypatch.setattr("controlplane.query.parse", broken)
    status, body = client.post([("Action", "DescribeCacheClusters"), ("Version", "2015-02-02")])
    assert status == 500 and "<Code>InternalFailure</Code>" in body
