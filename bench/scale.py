"""Scale: a 15-shard x 3-node cluster-mode group's build, the API beside 100 and 500 nodes, and
what watching idle nodes costs the control plane.

(a) CreateReplicationGroup (15 node groups, 2 replicas each: 45 real nodes) until the group is
`available`, while another client calls DescribeReplicationGroups every 50 ms (its p99 is the
API's latency during the build). Anchor: the same 45-node cluster built bare on this machine
(45 redis-servers started at once, `redis-cli --cluster create --cluster-replicas 2`, until every
node says cluster_state:ok). (b) Standalone cache clusters are added until the machine holds
100 (then 500) nodes, all `available`; the API's latency is measured with back-to-back calls,
then the control plane's CPU while nothing happens (from /proc/<pid>/stat), per 100 nodes.
The 500-node step is skipped with --quick.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

from bench.lab import CpuWatch, Lab, Ours, RawClient, log, proc_cpu, wait_until
from bench.report import Row, Table, ours_below, percentile

SHARDS, REPLICAS = 15, 2
GROUP = "bench-scale"
GROUP_BODY = f"Action=DescribeReplicationGroups&Version=2015-02-02&ReplicationGroupId={GROUP}".encode()
CLUSTERS_BODY = b"Action=DescribeCacheClusters&Version=2015-02-02&MaxRecords=100"
BUILD_TIMEOUT = 180.0
FILL_TIMEOUT = 900.0
# The issue's figure: 16.5% of a core watching 130 idle nodes, before this work.
ISSUE_IDLE_PER_100 = 16.5 * 100 / 130
NS = "{http://elasticache.amazonaws.com/doc/2015-02-02/}"


class Roomy(Ours):
    """Our server on networks wide enough for 500 nodes and their endpoints (a /24 holds 254)."""

    networks = ("127.0.132.0/22", "127.0.136.0/22")

    def settings(self) -> dict[str, str]:
        return {"ELASTICACHE_LOCAL_NODE_QUOTA": "600"}  # AWS's default quota is 300 nodes


def _pid(server: Ours) -> int:
    assert server.proc is not None
    return server.proc.pid


def group_status(data: bytes) -> str | None:
    root = ET.fromstring(data)
    status = root.find(f".//{NS}ReplicationGroup/{NS}Status")
    return status.text if status is not None else None


def build_group(server: Ours) -> tuple[float, list[float]]:
    """Seconds from CreateReplicationGroup to `available`, and Describe latencies meanwhile."""
    client = server.client()
    latencies: list[float] = []
    stop = threading.Event()
    raw = server.raw()

    def poll() -> None:
        while not stop.wait(0.05):
            t0 = time.perf_counter()
            raw.post(GROUP_BODY)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    client.create_replication_group(
        ReplicationGroupId=GROUP, ReplicationGroupDescription="scale", Engine="redis",
        CacheNodeType="cache.t3.micro", NumNodeGroups=SHARDS, ReplicasPerNodeGroup=REPLICAS)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    checker = server.raw()
    try:
        wait_until("15x3 group available", lambda: group_status(checker.post(GROUP_BODY)[1]) == "available",
                   BUILD_TIMEOUT, 0.05)
        took = time.perf_counter() - started
    finally:
        stop.set()
        poller.join()
        raw.close()
        checker.close()
    return took, latencies


def cluster_ports(n: int) -> list[int]:
    """`n` ports free on 127.0.0.1 with their cluster bus port (+10000) free too (so <= 55535)."""
    ports: list[int] = []
    for port in range(random.randrange(20000, 40000), 55536):
        if len(ports) == n:
            break
        if _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def bare_cluster_build(binary: str = "redis-server") -> float | None:
    """Seconds to start 45 redis-servers and `redis-cli --cluster create` them until every node
    says cluster_state:ok; None where redis-cli is missing."""
    cli = shutil.which("redis-cli")
    server_bin = shutil.which(binary)
    if cli is None or server_bin is None:
        return None
    ports = cluster_ports(SHARDS * (REPLICAS + 1))
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-bare-"))
    procs: list[subprocess.Popen[bytes]] = []

    def cli_call(port: int, *args: str) -> str:
        return subprocess.run([cli, "-p", str(port), *args], capture_output=True, text=True, timeout=30).stdout

    try:
        started = time.perf_counter()
        for port in ports:
            procs.append(subprocess.Popen(
                [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(workdir / f"nodes-{port}.conf"), "--dir", str(workdir),
                 "--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for port in ports:
            wait_until(f"bare node {port}", lambda p=port: cli_call(p, "PING").strip() == "PONG", 20, 0.01)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", str(REPLICAS), "--cluster-yes"],
                       capture_output=True, timeout=120, check=True)
        wait_until("bare cluster ok", lambda: all("cluster_state:ok" in cli_call(p, "CLUSTER", "INFO")
                                                  for p in ports), 60, 0.05)
        return time.perf_counter() - started
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def fill(server: Ours, first: int, total: int) -> float:
    """Standalone clusters bench-scale-NNN first..total-1 created, then every cluster available."""
    client = server.client()
    for i in range(first, total):
        client.create_cache_cluster(CacheClusterId=f"bench-scale-{i:03d}", Engine="redis",
                                    CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    raw = server.raw()
    try:
        def all_available() -> bool:
            statuses: list[str] = []
            marker = ""
            while True:
                status, data = raw.post(CLUSTERS_BODY + (f"&Marker={quote(marker)}".encode() if marker else b""))
                if status != 200:
                    raise RuntimeError(f"DescribeCacheClusters: HTTP {status}: {data[:200]!r}")
                root = ET.fromstring(data)
                statuses += [e.text or "" for e in root.iter(f"{NS}CacheClusterStatus")]
                found = root.find(f".//{NS}Marker")
                if found is None or not found.text:
                    return all(s == "available" for s in statuses)
                marker = found.text

        return wait_until(f"{total} clusters available", all_available, FILL_TIMEOUT, 0.5)
    finally:
        raw.close()


def api_latencies(server: Ours, seconds: float) -> dict[str, list[float]]:
    """Back-to-back calls of each body, in alternation, for `seconds`."""
    raw: RawClient = server.raw()
    lat: dict[str, list[float]] = {"DescribeReplicationGroups": [], "DescribeCacheClusters (100)": []}
    bodies = list(zip(lat, (GROUP_BODY, CLUSTERS_BODY), strict=True))
    try:
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            name, body = bodies[i % 2]
            t0 = time.perf_counter()
            status, data = raw.post(body)
            lat[name].append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}: {data[:200]!r}")
            i += 1
    finally:
        raw.close()
    return lat


def idle_cpu(server: Ours, seconds: float) -> float | None:
    """Percent of one core the control plane used over `seconds` of doing nothing asked."""
    pid = _pid(server)
    before, t0 = proc_cpu(pid), time.perf_counter()
    time.sleep(seconds)
    after, t1 = proc_cpu(pid), time.perf_counter()
    if before is None or after is None:
        return None
    return (after - before) / (t1 - t0) * 100


def run(lab: Lab) -> list[Table]:
    quick = lab.quick
    idle_seconds, api_seconds = (10.0, 2.0) if quick else (40.0, 5.0)
    totals = (100,) if quick else (100, 500)
    log("scale: bare 45-node cluster (redis-cli --cluster create)")
    bare = bare_cluster_build()
    server = Roomy()
    tables: list[Table] = []
    try:
        log("scale: starting elasticache-local")
        server.start()
        log(f"scale: {SHARDS}x{REPLICAS + 1} cluster-mode group")
        watch = CpuWatch(_pid(server))
        took, during = build_group(server)
        build = Table(f"CreateReplicationGroup {SHARDS} shards x {REPLICAS + 1} nodes (cluster mode) to "
                      "`available`", "bare redis-cli --cluster create")
        build.add(Row("time to available", took, bare, "s", target=ours_below(20, "s")))
        build.add(Row("DescribeReplicationGroups p99 while it builds", percentile(during, 99) * 1e3, None,
                      "ms", target=ours_below(50, "ms")))
        build.add(Row("DescribeReplicationGroups p50 while it builds", percentile(during, 50) * 1e3, None, "ms"))
        build.notes.append(f"{len(during)} Describe calls, one every 50 ms; {watch.summary()}")
        tables.append(build)
        nodes = SHARDS * (REPLICAS + 1)
        for total in totals:
            clusters = total - SHARDS * (REPLICAS + 1)
            log(f"scale: filling to {total} nodes ({clusters} standalone clusters)")
            filled = fill(server, nodes - SHARDS * (REPLICAS + 1), clusters)
            nodes = total
            time.sleep(3.0)  # the last starts settle (first probes, resync)
            lat = api_latencies(server, api_seconds)
            log(f"scale: idle CPU over {idle_seconds:g} s with {nodes} nodes")
            watch = CpuWatch(_pid(server))
            cpu = idle_cpu(server, idle_seconds)
            limit = 50 if total <= 100 else 100
            table = Table(f"{nodes} idle nodes ({SHARDS * (REPLICAS + 1)} in the 15x3 group, {clusters} "
                          "standalone clusters)", "the issue's figure")
            for name, values in lat.items():
                table.add(Row(f"{name} p99", percentile(values, 99) * 1e3, None, "ms",
                              target=ours_below(limit, "ms")))
            table.add(Row("control plane CPU per 100 idle nodes",
                          None if cpu is None else cpu * 100 / nodes, ISSUE_IDLE_PER_100, "% core",
                          target=ours_below(5, "% core")))
            table.notes.append(f"control plane CPU {cpu:.1f}% of a core over {idle_seconds:g} s; clusters "
                               f"available {filled:.1f} s after the last create; {watch.summary()}")
            table.notes.append("anchor: 16.5% of a core per 130 idle nodes (issue 13, before this work)")
            tables.append(table)
    finally:
        log("scale: stopping (removes every node)")
        server.stop()
    return tables
