"""Write-through with lazy loading against a live replication group and a real PostgreSQL:
reads after writes are hits and never stale, churn is counted exactly, and a TestFailover in the
middle of the workload."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples import common
from examples.db import Database, database
from examples.write_through.app import WriteThroughCache, connect, report, workload
from tests.api.conftest import LiveServer
from tests.eventually import eventually

GROUP = "test-write-through"


@pytest.fixture
def db() -> Iterator[Database]:
    with database() as db:  # a PostgreSQL of its own, stopped at the end
        db.seed(100)
        yield db


def run(wt: WriteThroughCache, ops: list[tuple[str, int]], prices: dict[int, int]) -> tuple[int, int]:
    """Run `ops`, checking every read against the database's truth; returns (reads of a key written
    earlier in `ops`, how many of those were cache hits)."""
    written: set[int] = set()
    after_write = hits = 0
    for n, (op, pid) in enumerate(ops):
        if op == "write":
            prices[pid] = 100 + n
            wt.set_price(pid, prices[pid])
            written.add(pid)
        else:
            before = wt.hits
            row = wt.product(pid)
            assert row is not None and row["price_cents"] == prices[pid], (pid, row, prices[pid])
            if pid in written:
                after_write += 1
                hits += wt.hits - before
    return after_write, hits


def test_write_through(service: LiveServer, db: Database) -> None:
    ec = common.elasticache()
    wt = WriteThroughCache(connect(ec, GROUP), db)
    assert wt.cache.flushall()
    prices = {i: 100 + i for i in range(100)}

    ops = workload(1500, 100, seed=3)
    # What write-through with lazy loading must give: a miss only for a key neither written nor read
    # before; a cache write is wasted when the key is written again, or never, before a read.
    cached: set[int] = set()
    unread: set[int] = set()
    misses = wasted = 0
    for op, pid in ops:
        if op == "write":
            wasted += pid in unread
            unread.add(pid)
        else:
            misses += pid not in cached
            unread.discard(pid)
        cached.add(pid)
    after_write, hits = run(wt, ops, prices)
    assert after_write > 100 and hits == after_write  # a read after a write is always a hit
    assert wt.misses == misses and wt.hits == sum(op == "read" for op, _ in ops) - misses
    assert wt.never_read() == wasted + len(unread) and wt.cache_errors == 0
    print("\n" + report(wt))

    # Drill: TestFailover while the workload runs. Reads stay correct throughout (a write whose
    # cache copy could not be confirmed on a replica is invalidated before the cache is read again).
    errors, drill, position = wt.cache_errors, workload(100000, 100, seed=4), 0

    def step() -> None:
        nonlocal position
        run(wt, drill[position:position + 10], prices)
        position += 10

    with common.Repeat(step) as workload_:
        took = common.failover_under(ec, GROUP, wt.cache, workload_)
        ec.get_waiter("replication_group_available").wait(ReplicationGroupId=GROUP, WaiterConfig={"Delay": 1})
        eventually(lambda: wt.cache.info("replication")["connected_slaves"] >= 1, timeout=30,
                   message="a replica of the new primary")  # until then WAIT 1 cannot confirm a write
        calls = workload_.calls
        eventually(lambda: workload_.calls > calls + 3, timeout=10)
    assert workload_.failures == []
    print(f"drill: new primary {common.primary_of(ec, GROUP)} serving {took:.2f} s after TestFailover; "
          f"{position} requests meanwhile, {wt.cache_errors - errors} saw a cache error, "
          f"the slowest 10 took {workload_.slowest * 1000:.0f} ms")
    # Recovered on its own: reads after writes are hits again, through the same endpoint and client.
    after_write, hits = run(wt, drill[position:position + 600], prices)
    assert after_write > 20 and hits == after_write
    common.delete(ec, group_id=GROUP)
