"""GET /api/v1/stream, served by uvicorn on a loopback port over a service on the fake runtime:
resource, event and node messages as the Query API and the control loop change things; filters;
keepalives; and a subscriber that never reads neither slows the writers nor grows without bound."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI

from controlplane.admin.api import admin_router
from controlplane.admin.broadcast import Broadcaster
from controlplane.state.records import CacheCluster, ResourceKey
from tests.eventually import eventually
from tests.harness import Caller
from tests.sse import SseReader
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
NODE = "123456789012-us-east-1-web-0001"


@pytest.fixture
def endpoint(world: World) -> Iterator[str]:
    """The JSON API served by uvicorn on 127.0.0.1 (a free port), stopped afterwards."""
    app = FastAPI()
    app.state.service = world.service
    app.include_router(admin_router())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, 10, message="uvicorn started")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        world.service.feed.close()  # open streams end, so the server can stop
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _statuses(reader: SseReader, cluster_id: str) -> list[str | None]:
    return [m["status"] for m in reader.of("resource") if m["kind"] == "cache-cluster" and m["id"] == cluster_id]


def test_a_cluster_created_through_the_query_api_streams_its_statuses_and_events(world: World,
                                                                                 endpoint: str) -> None:
    with SseReader(f"{endpoint}/api/v1/stream") as reader:
        reader.wait_connected()
        assert reader.status == 200 and reader.headers["content-type"].startswith("text/event-stream")
        world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
        world.settle()
        eventually(lambda: _statuses(reader, "web")[-1:] == ["available"], message="available streamed")
        statuses = _statuses(reader, "web")
        assert statuses[0] == "creating" and statuses.index("creating") < statuses.index("available")
        first = next(m for m in reader.of("resource") if m["id"] == "web")
        assert first == {"kind": "cache-cluster", "account": "123456789012", "region": "us-east-1", "id": "web",
                         "status": "creating"}
        described = [e["Message"] for e in world.call("DescribeEvents")["Events"]]
        eventually(lambda: [e["message"] for e in reader.of("event")] == described, message="events streamed")
        event = reader.of("event")[0]
        assert (event["source_type"], event["source_id"], event["account"]) == ("cache-cluster", "web",
                                                                               "123456789012")
        assert event["date"].endswith("Z")
        ids = [int(m.id) for m in reader.snapshot() if m.id is not None]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) == len(reader.snapshot())

        before = len(reader.snapshot())
        world.service.controller.enqueue_all()  # a resync: each record rewritten as it was
        world.settle()
        world.call("DeleteCacheCluster", CacheClusterId="web")
        world.settle()
        eventually(lambda: _statuses(reader, "web")[-2:] == ["deleting", None], message="the delete streamed")
        after = [m.data["status"] for m in reader.snapshot()[before:] if m.event == "resource"]
        assert after[0] == "deleting", after  # the resync's rewrites said nothing


def test_node_health_changes_are_streamed(world: World, endpoint: str) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    with SseReader(f"{endpoint}/api/v1/stream") as reader:
        reader.wait_connected()
        health = world.service.health
        health.probe_all()
        up = {"account": "123456789012", "region": "us-east-1", "node": NODE, "cache_cluster_id": "web",
              "node_id": "0001", "replication_group_id": None, "healthy": True, "role": "primary"}
        eventually(lambda: reader.of("node") == [up], message="its first answer")
        world.clock.advance(health.slow_interval)  # a standalone cluster's node is probed at that pace
        health.probe_all()  # nothing new: nothing said
        world.runtime.crash(NODE)
        eventually(lambda: reader.of("node")[1:] == [{**up, "healthy": False}], message="down")
        world.settle_until(lambda: world.runtime.inspect(NODE) is not None
                           and world.runtime.inspect(NODE).state.value == "running")
        world.clock.advance(health.slow_interval)
        health.probe_all()
        eventually(lambda: reader.of("node")[2:] == [up], message="up again")
        world.runtime.set_role(NODE, "slave")
        world.clock.advance(health.slow_interval)
        health.probe_all()
        eventually(lambda: reader.of("node")[3:] == [{**up, "role": "replica"}], message="a new role")


def test_streams_are_filtered_by_account_and_region(world: World, endpoint: str) -> None:
    with (SseReader(f"{endpoint}/api/v1/stream?region=eu-west-1") as europe,
          SseReader(f"{endpoint}/api/v1/stream?account=210987654321") as other,
          SseReader(f"{endpoint}/api/v1/stream?account=123456789012&region=us-east-1") as home):
        for reader in (europe, other, home):
            reader.wait_connected()
        Caller(world.service, region="eu-west-1")("CreateCacheCluster", CacheClusterId="eu", **REDIS)
        world.call("CreateCacheCluster", CacheClusterId="us", **REDIS)
        world.settle()
        eventually(lambda: _statuses(home, "us")[-1:] == ["available"])
        eventually(lambda: _statuses(europe, "eu")[-1:] == ["available"])
        assert {m["id"] for m in home.of("resource")} == {"us"}
        assert {m["region"] for m in europe.of("resource") + europe.of("event")} == {"eu-west-1"}
        assert other.snapshot() == []


def test_a_quiet_stream_gets_keepalives(world: World, endpoint: str) -> None:
    world.service.feed = Broadcaster(keepalive=0.05)
    with SseReader(f"{endpoint}/api/v1/stream") as reader:
        eventually(lambda: reader.snapshot_comments().count("keepalive") >= 2, message="keepalives")


def test_a_stream_ends_when_the_service_stops(world: World, endpoint: str) -> None:
    with SseReader(f"{endpoint}/api/v1/stream") as reader:
        reader.wait_connected()
        world.service.feed.close()
        eventually(lambda: reader.ended, message="the stream ended")


def test_a_subscriber_behind_by_more_than_the_limit_gets_a_gap() -> None:
    async def scenario() -> list[bytes]:
        broadcaster = Broadcaster(limit=10)
        frames = broadcaster.frames()
        chunks = [await anext(frames)]  # subscribed
        for i in range(25):
            broadcaster.publish("resource", {"i": i})
        chunks += [await anext(frames), await anext(frames)]
        await frames.aclose()
        assert broadcaster.subscribers() == 0
        return chunks

    connected, gap, rest = asyncio.run(scenario())
    assert b": connected" in connected
    assert gap == b'event: gap\ndata: {"missed":20}\n\n'
    assert rest.count(b"event: resource") == 5 and b'{"i":20}' in rest and b'{"i":24}' in rest


def _write(world: World, times: int) -> float:
    key = ResourceKey(CacheCluster.KIND, "123456789012", "us-east-1", "web")
    started = time.perf_counter()
    for _ in range(times):
        world.service.store.update(key, CacheCluster, lambda c: setattr(c, "generation", c.generation + 1))
    return time.perf_counter() - started


def test_a_subscriber_that_never_reads_neither_slows_writers_nor_grows(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    feed = world.service.feed
    alone = min(_write(world, 1000) for _ in range(3))
    loop = asyncio.new_event_loop()  # the subscriber's loop runs, and its reader never takes a message
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        subscription = asyncio.run_coroutine_threadsafe(_subscribe(feed), loop).result(10)
        watched = min(_write(world, 1000) for _ in range(3))
        batch, missed = subscription.take(threading.Lock())
        assert len(batch) <= 1000 and missed >= 2000, (len(batch), missed)
        # Publishing is a small dict and a queue append beside an SQLite write: a bounded cost, not a wait.
        assert watched < alone * 2 + 0.1, (alone, watched)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _subscribe(feed: Broadcaster):  # type: ignore[no-untyped-def]
    return feed.subscribe()
