"""Cache-aside against a live service and a real PostgreSQL: exact hit/miss accounting, TTLs,
invalidation, and a node kill in the middle of the workload."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
import redis

from examples import common
from examples.cache_aside.app import ProductCache, connect, report, workload
from examples.db import Database, database
from tests.api.conftest import LiveServer
from tests.eventually import eventually

CLUSTER = "test-cache-aside"


@pytest.fixture
def db() -> Iterator[Database]:
    with database() as db:  # a PostgreSQL of its own, stopped at the end
        db.seed(100)
        yield db


def run(pc: ProductCache, ops: list[tuple[str, int]], prices: dict[int, int], cached: set[int]) -> int:
    """Run `ops`, checking every read against the database's truth; returns the misses a correct
    cache-aside must have had (first read of a key, or first read after its invalidation)."""
    expected_misses = 0
    for n, (op, pid) in enumerate(ops):
        if op == "write":
            prices[pid] = 100 + n
            pc.set_price(pid, prices[pid])
            cached.discard(pid)
        else:
            row = pc.product(pid)
            assert row is not None and row["price_cents"] == prices[pid], (pid, row, prices[pid])
            expected_misses += pid not in cached
            cached.add(pid)
    return expected_misses


def test_cache_aside(service: LiveServer, db: Database) -> None:
    ec = common.elasticache()
    pc = ProductCache(connect(ec, CLUSTER), db, ttl=300)
    assert pc.cache.flushall()
    prices = {i: 100 + i for i in range(100)}
    cached: set[int] = set()

    # Lazy loading: exactly one miss per first read and per read after a write's invalidation.
    ops = workload(1500, 100, seed=7)
    expected = run(pc, ops, prices, cached)
    reads = sum(op == "read" for op, _ in ops)
    assert (pc.misses, pc.hits) == (expected, reads - expected)
    assert pc.hit_ratio() > 0.8
    assert 0 < pc.cache.ttl("product:0") <= 300  # filled with a TTL
    print("\n" + report(pc))

    # A TTL ends a cached copy on time: the next read is a miss that reloads it.
    short = ProductCache(pc.cache, db, ttl=1)
    pc.cache.delete("product:1")
    short.product(1)
    eventually(lambda: not pc.cache.exists("product:1"), timeout=5, message="product:1 expiring")
    misses = short.misses
    short.product(1)
    assert short.misses == misses + 1

    # Drill: the cache node is killed while the workload runs. Every read is still answered, never
    # stale (the database answers while the cache cannot), and the client finds the recovered node
    # on its own.
    run_id = pc.cache.info("server")["run_id"]
    errors, drill_ops, position = pc.cache_errors, workload(100000, 100, seed=8), 0

    def step() -> None:
        nonlocal position
        run(pc, drill_ops[position:position + 10], prices, cached)
        position += 10

    def recovered() -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(pc.cache.info("server")["run_id"] != run_id and not pc.unsent_invalidations)
        return False

    with common.Repeat(step) as workload_:
        eventually(lambda: workload_.calls > 3, timeout=10)
        killed = time.monotonic()
        common.kill_node(CLUSTER)
        eventually(recovered, timeout=30, message="the cache node recovering")
        back = time.monotonic() - killed
        calls = workload_.calls
        eventually(lambda: workload_.calls > calls + 3, timeout=10)
    assert workload_.failures == []
    print(f"drill: the node answered again {back:.2f} s after the kill; {position} requests meanwhile, "
          f"{pc.cache_errors - errors} saw a cache error, the slowest 10 took {workload_.slowest * 1000:.0f} ms")
    cached.clear()  # the replacement node starts empty (or from its last snapshot): assume nothing
    hits = pc.hits
    run(pc, drill_ops[position:position + 500], prices, cached)
    assert pc.hits - hits > 250  # hits again, without anything restarting the client
    common.delete(ec, cluster_id=CLUSTER)
