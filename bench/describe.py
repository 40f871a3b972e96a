"""DescribeCacheClusters listing 50 clusters: elasticache-local against moto_server.

Both servers hold the same 50 redis cache clusters (on ours, 50 real nodes, all `available`
before anything is measured). (a) The server alone: the same form body POSTed raw over one
keep-alive connection, the response read but not parsed. (b) End to end through boto3, which
adds signing and XML parsing on the client, the same for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.lab import Lab, Server, log, wait_until
from bench.report import Row, Table, median, ours_below, percentile, ratio_at_least

CLUSTERS = 50
BODY = b"Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true"
MAX_CALLS = 200_000
READY_TIMEOUT = 180.0


@dataclass
class Run:
    calls: int
    seconds: float
    latencies: list[float]  # seconds
    response_bytes: int = 0
    connects: int = 0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e3


def timed_loop(call: Callable[[], object], seconds: float, warmup: float) -> Run:
    """Call repeatedly for `warmup` s (discarded), then for `seconds` s (at most MAX_CALLS)."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        call()
    latencies: list[float] = []
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end and len(latencies) < MAX_CALLS:
        call()
        after = time.perf_counter()
        latencies.append(after - now)
        now = after
    return Run(len(latencies), now - start, latencies)


def raw_run(server: Server, seconds: float, warmup: float) -> Run:
    raw = server.raw()
    sizes: set[int] = set()

    def call() -> None:
        status, data = raw.post(BODY)
        if status != 200:
            raise RuntimeError(f"{server.name}: DescribeCacheClusters answered HTTP {status}: {data[:300]!r}")
        sizes.add(len(data))

    try:
        call()
        before = raw.connects
        run = timed_loop(call, seconds, warmup)
        run.connects = raw.connects - before
        run.response_bytes = max(sizes)
        return run
    finally:
        raw.close()


def boto3_run(server: Server, seconds: float, warmup: float) -> Run:
    client = server.client()

    def call() -> None:
        client.describe_cache_clusters(ShowCacheNodeInfo=True)

    got = client.describe_cache_clusters(ShowCacheNodeInfo=True)["CacheClusters"]
    if len(got) != CLUSTERS:
        raise RuntimeError(f"{server.name}: boto3 sees {len(got)} clusters, expected {CLUSTERS}")
    return timed_loop(call, seconds, warmup)


def populate(server: Server, wait_available: bool) -> None:
    client = server.client()
    log(f"{server.name}: creating {CLUSTERS} redis cache clusters")
    for i in range(CLUSTERS):
        client.create_cache_cluster(CacheClusterId=f"bench-describe-{i:02d}", Engine="redis",
                                    CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    raw = server.raw()
    try:
        def all_available() -> bool:
            statuses = raw.statuses()
            return len(statuses) == CLUSTERS and all(s == "available" for s in statuses)

        took = wait_until(f"{server.name}: {CLUSTERS} clusters available", all_available,
                          READY_TIMEOUT if wait_available else 10.0, 0.05)
        log(f"{server.name}: all {CLUSTERS} available {took:.1f} s after the last create")
    finally:
        raw.close()


def run(lab: Lab) -> list[Table]:
    seconds, warmup = (0.5, 0.2) if lab.quick else (2.0, 0.5)
    ours, moto = lab.ours, lab.moto
    lab.reset()
    try:
        populate(ours, wait_available=True)
        populate(moto, wait_available=False)
        log("describe: raw POST")
        raw_ours, raw_moto = raw_run(ours, seconds, warmup), raw_run(moto, seconds, warmup)
        log("describe: boto3")
        b_ours, b_moto = boto3_run(ours, seconds, warmup), boto3_run(moto, seconds, warmup)
    finally:
        log("describe: resetting (stops the 50 nodes)")
        lab.reset()

    raw = Table(f"DescribeCacheClusters, {CLUSTERS} clusters, raw POST on one keep-alive connection "
                f"({seconds:g} s each)", "moto")
    raw.add(Row("calls/s", raw_ours.rate, raw_moto.rate, target=ratio_at_least(10)))
    raw.add(Row("p50", raw_ours.p(50), raw_moto.p(50), "ms"))
    raw.add(Row("p99", raw_ours.p(99), raw_moto.p(99), "ms", target=ours_below(5, "ms")))
    raw.add(Row("response", raw_ours.response_bytes, raw_moto.response_bytes, "bytes"))
    raw.notes.append(f"calls measured: ours {raw_ours.calls}, moto {raw_moto.calls}; TCP connects during "
                     f"the run: ours {raw_ours.connects}, moto {raw_moto.connects}")

    e2e = Table(f"DescribeCacheClusters, {CLUSTERS} clusters, boto3 describe_cache_clusters"
                f"(ShowCacheNodeInfo=True) ({seconds:g} s each)", "moto")
    e2e.add(Row("calls/s", b_ours.rate, b_moto.rate, target=ratio_at_least(2)))
    e2e.add(Row("p50", median(b_ours.latencies) * 1e3, median(b_moto.latencies) * 1e3, "ms"))
    e2e.add(Row("p99", b_ours.p(99), b_moto.p(99), "ms"))
    return [raw, e2e]
