"""The dashboard with 100 caches: how long the server takes for the overview page (and for the
fragment the live feed makes an open page re-fetch), and how long a status change takes to show
on a page open in headless Chromium.

100 caches of real nodes: 30 redis clusters, 60 memcached clusters, 10 replication groups of a
primary and a replica (110 nodes), all `available` before anything is measured. (a) GET
/dashboard and GET /dashboard/fragments/caches over one keep-alive connection, beside the Query
API's DescribeCacheClusters of the same caches (the anchor: what reading the same records costs
without the page). (b) A page open in Chromium (Debian's, through Playwright); a cache cluster is
created with boto3 and the time from the call to its row (with its status) on the page is taken,
for several clusters. (A reboot's status is over too soon to be seen reliably: a redis node
restarts in well under the page's re-fetch.)
"""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Callable

from bench.lab import CpuWatch, Lab, Server, log, wait_until
from bench.report import Row, Table, ours_below, percentile

REDIS, MEMCACHED, GROUPS = 30, 60, 10
CACHES = REDIS + MEMCACHED + GROUPS
READY_TIMEOUT = 300.0
DESCRIBE = b"Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true&MaxRecords=100"


def populate(server: Server) -> None:
    ec = server.client()
    log(f"dashboard: creating {CACHES} caches ({REDIS + MEMCACHED + 2 * GROUPS} nodes)")
    for i in range(REDIS):
        ec.create_cache_cluster(CacheClusterId=f"dash-redis-{i:02d}", Engine="redis", CacheNodeType="cache.t3.micro",
                                NumCacheNodes=1)
    for i in range(MEMCACHED):
        ec.create_cache_cluster(CacheClusterId=f"dash-mc-{i:02d}", Engine="memcached",
                                CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    for i in range(GROUPS):
        ec.create_replication_group(ReplicationGroupId=f"dash-rg-{i:02d}", ReplicationGroupDescription="bench",
                                    Engine="redis", CacheNodeType="cache.t3.micro", NumCacheClusters=2)

    def all_available() -> bool:
        clusters = [c for page in ec.get_paginator("describe_cache_clusters").paginate()
                    for c in page["CacheClusters"]]
        groups = ec.describe_replication_groups()["ReplicationGroups"]
        return (len(clusters) == REDIS + MEMCACHED + 2 * GROUPS and len(groups) == GROUPS
                and all(c["CacheClusterStatus"] == "available" for c in clusters)
                and all(g["Status"] == "available" for g in groups))

    took = wait_until("every cache available", all_available, READY_TIMEOUT, 0.5)
    log(f"dashboard: all available {took:.1f} s after the last create")


def timed(server: Server, method: str, path: str, body: bytes | None, seconds: float,
          before: Callable[[], None] | None = None) -> list[float]:
    """Latencies (ms) of back-to-back requests on one keep-alive connection for `seconds`;
    `before` runs (untimed) before each one."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    out: list[float] = []

    def call() -> None:
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status}: {data[:300]!r}")

    try:
        for _ in range(3):
            call()  # warm up: templates compiled, shapes cached
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if before is not None:
                before()
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1e3)
    finally:
        conn.close()
    return out


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def live_updates(server: Server, samples: int) -> list[float]:
    """Milliseconds from a RebootCacheCluster call to its status on an open page, per sample."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    if executable is None:
        raise RuntimeError("no chromium on PATH (apt-get install chromium)")
    ec = server.client()
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(f"{server.url}/dashboard")
            page.wait_for_selector("#feed-state [data-state=live]", timeout=10_000)
            for i in range(samples):
                cluster = f"dash-new-{i:02d}"
                start = time.perf_counter()
                ec.create_cache_cluster(CacheClusterId=cluster, Engine="memcached", CacheNodeType="cache.t3.micro",
                                        NumCacheNodes=1)
                # Polled on every animation frame: the page is read as soon as it changes.
                page.wait_for_function(f"document.querySelector('tr[data-cache=\"{cluster}\"] .cache-status')",
                                       polling="raf", timeout=10_000)
                out.append((time.perf_counter() - start) * 1e3)
        finally:
            browser.close()
    return out


def _row(name: str, ours: list[float], anchor: list[float] | None, q: float, target: float | None) -> Row:
    return Row(name, percentile(ours, q), percentile(anchor, q) if anchor else None, "ms",
               ours_below(target, "ms") if target is not None else None)


def run(lab: Lab) -> list[Table]:
    seconds = 1.0 if lab.quick else 4.0
    samples = 4 if lab.quick else 10
    ours = lab.ours
    lab.reset()
    try:
        populate(ours)
        assert ours.proc is not None
        watch = CpuWatch(ours.proc.pid)
        log("dashboard: GET /dashboard")
        page = timed(ours, "GET", "/dashboard", None, seconds)
        # The table is kept until something it shows changes: a tag written before each request
        # (a record write, as any status change is) makes every page render the table afresh.
        ec = ours.client()
        arn = ec.describe_cache_clusters(CacheClusterId="dash-redis-00")["CacheClusters"][0]["ARN"]
        changes = iter(range(1_000_000))
        fresh = timed(ours, "GET", "/dashboard", None, seconds, before=lambda: ec.add_tags_to_resource(
            ResourceName=arn, Tags=[{"Key": "bench", "Value": str(next(changes))}]))
        fragment = timed(ours, "GET", "/dashboard/fragments/caches", None, seconds)
        describe = timed(ours, "POST", "/", DESCRIBE, seconds)
        cpu = watch.summary()
        log("dashboard: status changes on an open page")
        updates: list[float] | None = None
        why = ""
        try:
            updates = live_updates(ours, samples)
        except (ImportError, RuntimeError) as exc:
            why = f"not measured: {exc}"
    finally:
        log("dashboard: resetting")
        lab.reset()

    table = Table(f"Dashboard with {CACHES} caches ({REDIS + MEMCACHED + 2 * GROUPS} nodes): server time on one "
                  f"keep-alive connection ({seconds:g} s each)", "DescribeCacheClusters")
    table.add(_row("GET /dashboard p50", page, describe, 50, None))
    table.add(_row("GET /dashboard p99", page, describe, 99, 100))
    table.add(_row("GET /dashboard after a change p50", fresh, describe, 50, None))
    table.add(_row("GET /dashboard after a change p99", fresh, describe, 99, 100))
    table.add(_row("fragment (live re-fetch) p50", fragment, describe, 50, None))
    table.add(_row("fragment (live re-fetch) p99", fragment, describe, 99, 100))
    table.notes.append(f"{len(page)} page loads; CPU: {cpu}")
    table.notes.append("anchor: the Query API's DescribeCacheClusters (100 clusters a page) over the same records")
    live = Table("A status change reaching a page open in headless Chromium (CreateCacheCluster -> its row and "
                 "status on the page)", "-")
    if updates:
        live.add(Row("median", percentile(updates, 50), None, "ms"))
        live.add(Row(f"worst of {len(updates)}", max(updates), None, "ms", ours_below(500, "ms")))
    else:
        live.notes.append(why)
    return [table, live]
