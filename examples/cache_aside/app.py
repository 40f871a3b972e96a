"""Cache-aside (lazy loading) in front of PostgreSQL, with a Redis cache cluster found through
DescribeCacheClusters.

Reads try the cache; a miss reads the database and fills the cache with a TTL (three round trips:
GET, SELECT, SET EX). Writes go to the database and invalidate (DEL) the cached copy. When the
cache cannot be reached the database answers alone, and an invalidation that could not be made is
retried before the cache is trusted again, so a read is never stale.

Run: .venv/bin/python -m examples.cache_aside.app   (with `make serve` running)"""

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
from examples.db import Database, database

CLUSTER_ID = "example-cache-aside"


def connect(ec: Any, cluster_id: str = CLUSTER_ID) -> redis.Redis:
    """The cluster's node, from DescribeCacheClusters (created when missing). Short timeouts and one
    retry: a cache that does not answer quickly is skipped, not waited for."""
    node = common.cache_cluster(ec, cluster_id)["CacheNodes"][0]["Endpoint"]
    return redis.Redis(host=node["Address"], port=node["Port"], socket_timeout=0.5, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 1))


@dataclass
class ProductCache:
    cache: redis.Redis
    db: Database
    ttl: int = 300
    hits: int = 0
    misses: int = 0
    cache_errors: int = 0
    hit_seconds: list[float] = field(default_factory=list)
    miss_seconds: list[tuple[float, float, float]] = field(default_factory=list)  # GET, SELECT, SET EX
    unsent_invalidations: set[str] = field(default_factory=set)

    def _cache_usable(self) -> bool:
        """False while an invalidation is owed to the cache (it may hold a value the database changed)."""
        if self.unsent_invalidations:
            try:
                self.cache.delete(*self.unsent_invalidations)
                self.unsent_invalidations.clear()
            except redis.RedisError:
                self.cache_errors += 1
                return False
        return True

    def product(self, product_id: int) -> dict[str, Any] | None:
        key = f"product:{product_id}"
        usable = self._cache_usable()
        t0 = time.perf_counter()
        cached = None
        if usable:
            try:
                cached = self.cache.get(key)
            except redis.RedisError:
                self.cache_errors += 1
                usable = False
        t1 = time.perf_counter()
        if cached is not None:
            self.hits += 1
            self.hit_seconds.append(t1 - t0)
            return dict(json.loads(cached))
        self.misses += 1
        row = self.db.product(product_id)
        t2 = time.perf_counter()
        if row is not None and usable:
            try:
                self.cache.set(key, json.dumps(row), ex=self.ttl)
            except redis.RedisError:
                self.cache_errors += 1
                usable = False
        if usable:
            self.miss_seconds.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        return row

    def set_price(self, product_id: int, cents: int) -> None:
        self.db.set_price(product_id, cents)
        key = f"product:{product_id}"
        try:
            self.cache.delete(key)
        except redis.RedisError:
            self.cache_errors += 1
            self.unsent_invalidations.add(key)

    def hit_ratio(self) -> float:
        return self.hits / max(1, self.hits + self.misses)


def workload(count: int, products: int, seed: int = 1, write_every: int = 25) -> list[tuple[str, int]]:
    """Skewed reads (a few popular products), and a price change every `write_every` requests."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(products)]
    ops = []
    for i in range(count):
        pid = rng.choices(range(products), weights)[0]
        ops.append(("write" if i % write_every == write_every - 1 else "read", pid))
    return ops


def report(pc: ProductCache) -> str:
    ms = 1000
    get, select, setex = (statistics.median(c[i] for c in pc.miss_seconds) * ms for i in range(3))
    hit = statistics.median(pc.hit_seconds) * ms
    return (f"hit ratio {pc.hit_ratio():.1%} ({pc.hits} hits, {pc.misses} misses, {pc.cache_errors} cache errors)\n"
            f"a hit costs {hit:.3f} ms (GET); a miss costs {get + select + setex:.3f} ms = GET {get:.3f} + "
            f"SELECT {select:.3f} ({pc.db.kind}) + SET EX {setex:.3f} (medians)")


def main() -> None:
    ec = common.elasticache()
    with database() as db:
        db.seed(200)
        pc = ProductCache(connect(ec), db)
        pc.cache.flushall()
        for op, pid in workload(5000, 200):
            if op == "read":
                pc.product(pid)
            else:
                pc.set_price(pid, random.randint(100, 999))
        print(report(pc))
    common.delete(ec, cluster_id=CLUSTER_ID)


if __name__ == "__main__":
    main()
