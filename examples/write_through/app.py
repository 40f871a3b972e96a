"""Write-through combined with lazy loading, on a replication group's primary endpoint (found
with DescribeReplicationGroups).

Every write goes to PostgreSQL and then to the cache (SET ... EX, then WAIT for the replica), so a
read after a write is a hit and never stale; reads of keys not written lately still load lazily,
and the TTL evicts what nobody reads. The cost: every write pays a cache round trip, and keys that
are written but never read churn the cache (measured here).

A write whose cache copy could not be confirmed on the replica (the cache is down, or failing
over) is invalidated before the cache is read again: a failover can lose an unreplicated SET and
bring back the older value.

Run: .venv/bin/python -m examples.write_through.app   (with `make serve` running)"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from examples import common
from examples.cache_aside.app import ProductCache
from examples.db import database

GROUP_ID = "example-write-through"


def connect(ec: Any, group_id: str = GROUP_ID) -> redis.Redis:
    """The group's primary endpoint (the group is created when missing, with one replica)."""
    (host, port), _ = common.group_endpoints(common.replication_group(ec, group_id, replicas=1))
    return redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 1))


@dataclass
class WriteThroughCache(ProductCache):
    """ProductCache's lazy-loading reads, with write-through writes."""

    replicas: int = 1
    cache_writes: int = 0
    overwritten_unread: int = 0  # cache writes replaced before anyone read them
    unread: set[str] = field(default_factory=set)
    db_write_seconds: list[float] = field(default_factory=list)
    cache_write_seconds: list[float] = field(default_factory=list)

    def product(self, product_id: int) -> dict[str, Any] | None:
        self.unread.discard(f"product:{product_id}")
        return super().product(product_id)

    def set_price(self, product_id: int, cents: int) -> None:
        key = f"product:{product_id}"
        t0 = time.perf_counter()
        row = self.db.set_price(product_id, cents)
        t1 = time.perf_counter()
        self.cache_writes += 1
        self.overwritten_unread += key in self.unread
        self.unread.add(key)
        try:
            pipe = self.cache.pipeline(transaction=False)
            pipe.set(key, json.dumps(row), ex=self.ttl)
            pipe.execute_command("WAIT", self.replicas, 100)
            _, replicated = pipe.execute()
            durable = replicated >= self.replicas
        except redis.RedisError:
            self.cache_errors += 1
            durable = False
        if not durable:
            self.unsent_invalidations.add(key)
        else:
            self.db_write_seconds.append(t1 - t0)
            self.cache_write_seconds.append(time.perf_counter() - t1)

    def never_read(self) -> int:
        """Cache writes nobody read: replaced unread, or still unread now."""
        return self.overwritten_unread + len(self.unread)


def workload(count: int, products: int, seed: int = 1) -> list[tuple[str, int]]:
    """A price feed writes every product alike (40%); readers look mostly at the popular ones."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 1.2 for i in range(products)]
    return [("write", rng.randrange(products)) if rng.random() < 0.4 else ("read", rng.choices(range(products),
            weights)[0]) for _ in range(count)]


def report(wt: WriteThroughCache) -> str:
    db, cache = (statistics.median(s) * 1000 for s in (wt.db_write_seconds, wt.cache_write_seconds))
    return (f"reads: hit ratio {wt.hit_ratio():.1%} ({wt.hits} hits, {wt.misses} misses)\n"
            f"a write costs {db + cache:.3f} ms = UPDATE {db:.3f} ({wt.db.kind}) + SET EX and WAIT {cache:.3f} "
            f"(medians): the cache adds {cache / db:.0%}\n"
            f"churn: {wt.never_read()} of {wt.cache_writes} cache writes ({wt.never_read() / wt.cache_writes:.0%}) "
            f"were never read")


def main() -> None:
    ec = common.elasticache()
    with database() as db:
        db.seed(200)
        wt = WriteThroughCache(connect(ec), db)
        wt.cache.flushall()
        for op, pid in workload(5000, 200):
            if op == "read":
                wt.product(pid)
            else:
                wt.set_price(pid, random.randint(100, 999))
        print(report(wt))
    common.delete(ec, group_id=GROUP_ID)


if __name__ == "__main__":
    main()
