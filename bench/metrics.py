"""GET /metrics: how long a scrape takes with 100 nodes, and whether scraping costs a node's clients.

(a) Render time: 100 redis cache clusters (100 real nodes, all `available` and all in the
sampler's snapshot before anything is measured); GET /metrics over one keep-alive connection,
beside DescribeCacheClusters of the same 100 clusters (the API's own read of the same state).
(b) redis-benchmark against one of those nodes, with /metrics scraped every second by another
thread and without, in turns (the order alternates, so neither side always runs first); the
ratio is scraped / not scraped. The sampler reads every node every METRICS_INTERVAL on both
sides: that is the service as users run it; only the scrapes differ.
"""

from __future__ import annotations

import http.client
import re
import shutil
import threading
import time
from typing import Any

from bench.failover import redis_benchmark
from bench.lab import CpuWatch, Lab, RawClient, log, wait_until
from bench.report import Row, Table, median, ours_below, percentile, ratio_at_least

NODES = 100
READY_TIMEOUT = 300.0
SCRAPE_EVERY = 1.0
_READ_SECONDS = re.compile(rb"^elasticache_local_node_metrics_read_seconds ([0-9.e+-]+)$", re.M)
_IS_MASTER = re.compile(rb"^elasticache_IsMaster\{", re.M)


class Scraper:
    """GET /metrics over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self) -> bytes:
        self._conn.request("GET", "/metrics")
        resp = self._conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET /metrics: HTTP {resp.status}: {body[:300]!r}")
        return body

    def close(self) -> None:
        self._conn.close()


def _timed(call: Any, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def _create(lab: Lab, count: int) -> tuple[str, int]:
    """`count` redis clusters, all available and all in the snapshot; one node's address."""
    client = lab.ours.client()
    for i in range(count):
        client.create_cache_cluster(CacheClusterId=f"bench-m-{i:03d}", Engine="redis",
                                    CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    raw = lab.ours.raw()
    wait_until(f"{count} clusters available", lambda: raw.statuses().count("available") == count,
               READY_TIMEOUT, 0.2)
    scraper = Scraper(lab.ours.port)
    wait_until(f"{count} nodes in /metrics", lambda: len(_IS_MASTER.findall(scraper.get())) == count,
               READY_TIMEOUT, 0.5)
    scraper.close()
    raw.close()
    node = client.describe_cache_clusters(CacheClusterId="bench-m-000", ShowCacheNodeInfo=True)
    endpoint = node["CacheClusters"][0]["CacheNodes"][0]["Endpoint"]
    return endpoint["Address"], endpoint["Port"]


def render_table(lab: Lab, count: int, calls: int) -> Table:
    scraper = Scraper(lab.ours.port)
    raw: RawClient = lab.ours.raw()
    body = b"Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true&MaxRecords=100"
    try:
        for _ in range(5):  # warm both
            scraper.get()
            raw.post(body)
        ours: list[float] = []
        anchor: list[float] = []
        for _ in range(calls // 10):  # in turns, so both see the same background load
            ours += _timed(scraper.get, 10)
            anchor += _timed(lambda: raw.post(body), 10)
        page = scraper.get()
    finally:
        scraper.close()
        raw.close()
    read = _READ_SECONDS.search(page)
    table = Table(f"GET /metrics with {count} redis nodes ({calls} scrapes, keep-alive; {len(page):,} bytes)",
                  f"DescribeCacheClusters of the same {count} clusters")
    table.add(Row("p50", percentile(ours, 50) * 1e3, percentile(anchor, 50) * 1e3, "ms"))
    table.add(Row("p99", percentile(ours, 99) * 1e3, percentile(anchor, 99) * 1e3, "ms",
                  target=ours_below(100, "ms")))
    table.add(Row("the sampler's round: every node's INFO read (off the request path)",
                  float(read.group(1)) * 1e3 if read else None, None, "ms"))
    return table


def throughput_table(lab: Lab, host: str, port: int, requests: int, reps: int) -> Table:
    if shutil.which("redis-benchmark") is None:
        raise RuntimeError("redis-benchmark is missing: apt-get install -y redis-tools")
    runs: dict[tuple[bool, str], list[float]] = {}
    scrapes = 0
    pid = lab.ours.proc.pid if lab.ours.proc is not None else 0
    watch = CpuWatch(pid)
    for rep in range(reps):
        for scraped in ((False, True) if rep % 2 == 0 else (True, False)):
            log(f"redis-benchmark {'with' if scraped else 'without'} scraping ({rep + 1}/{reps})")
            stop = threading.Event()
            count = [0]

            def scrape(stop: threading.Event = stop, count: list[int] = count) -> None:
                scraper = Scraper(lab.ours.port)
                try:
                    while not stop.is_set():
                        scraper.get()
                        count[0] += 1
                        stop.wait(SCRAPE_EVERY)
                finally:
                    scraper.close()

            thread = threading.Thread(target=scrape, daemon=True) if scraped else None
            if thread is not None:
                thread.start()
            try:
                result = redis_benchmark(host, port, 1, requests)
            finally:
                stop.set()
                if thread is not None:
                    thread.join(30)
            scrapes += count[0]
            for cmd, rps in result.items():
                runs.setdefault((scraped, cmd), []).append(rps)
    table = Table(f"redis-benchmark -t set,get -n {requests} -c 50 against one of the {NODES} nodes, /metrics "
                  f"scraped every {SCRAPE_EVERY:g} s (median of {reps} runs per side, in turns)",
                  "the same without scraping")
    for cmd in ("SET", "GET"):
        table.add(Row(f"{cmd} requests/s", median(runs[(True, cmd)]), median(runs[(False, cmd)]),
                      target=ratio_at_least(0.95)))
    table.notes.append(f"{scrapes} scrapes during the scraped runs; {watch.summary()}")
    return table


def run(lab: Lab) -> list[Table]:
    count = 30 if lab.quick else NODES
    lab.reset()
    try:
        log(f"metrics: creating {count} redis clusters")
        host, port = _create(lab, count)
        log("metrics: timing /metrics")
        tables = [render_table(lab, count, 50 if lab.quick else 300)]
        tables.append(throughput_table(lab, host, port, 20_000 if lab.quick else 200_000, 1 if lab.quick else 5))
        return tables
    finally:
        log(f"metrics: resetting (stops the {count} nodes)")
        lab.reset()
