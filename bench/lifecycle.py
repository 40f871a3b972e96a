"""Create/delete pairs, and how fast a new cluster becomes `available`.

(i) Pair rate. moto answers both calls from memory, so its pair is two API calls. Ours starts
and stops a real redis-server, and, as AWS, refuses to delete a cluster that is still
`creating`; so our pair is: CreateCacheCluster, poll until `available`, DeleteCacheCluster,
poll until CacheClusterNotFound. Polls are raw DescribeCacheClusters every 2 ms.
(ii) CreateCacheCluster response -> `available`, from the same pairs, beside the anchor: a bare
redis-server, from Popen to its first answered PING.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench.lab import CpuWatch, Lab, RawClient, Server, free_port, log, wait_until
from bench.report import Row, Table, median, ours_below, percentile, ratio_at_least

POLL = 0.002
WAIT_TIMEOUT = 30.0
PING_TIMEOUT = 5.0
MAX_MOTO_PAIRS = 5000
REDIS = "redis-server"


@dataclass
class Pairs:
    count: int = 0
    seconds: float = 0.0
    create_call: list[float] = field(default_factory=list)
    delete_call: list[float] = field(default_factory=list)
    to_available: list[float] = field(default_factory=list)
    to_gone: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def _create(client: Any, cluster_id: str) -> None:
    client.create_cache_cluster(CacheClusterId=cluster_id, Engine="redis",
                                CacheNodeType="cache.t3.micro", NumCacheNodes=1)


def _delete(client: Any, cluster_id: str) -> None:
    client.delete_cache_cluster(CacheClusterId=cluster_id)


def moto_pairs(server: Server, seconds: float) -> Pairs:
    """API-level pairs for `seconds` (moto keeps deleted clusters as `deleting`: fresh ids)."""
    client = server.client()
    for i in range(3):  # warm-up
        _create(client, f"bench-warm-{i}")
        _delete(client, f"bench-warm-{i}")
    out = Pairs()
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end and out.count < MAX_MOTO_PAIRS:
        cid = f"bench-life-{out.count:05d}"
        t0 = time.perf_counter()
        _create(client, cid)
        t1 = time.perf_counter()
        _delete(client, cid)
        t2 = time.perf_counter()
        out.create_call.append(t1 - t0)
        out.delete_call.append(t2 - t1)
        out.count += 1
    out.seconds = time.perf_counter() - start
    return out


def _wait_status(raw: RawClient, cluster_id: str, want: str | None) -> float:
    return wait_until(f"{cluster_id} {want or 'gone'}", lambda: raw.cluster_status(cluster_id) == want,
                      WAIT_TIMEOUT, POLL)


def our_pair(client: Any, raw: RawClient, cluster_id: str, out: Pairs | None) -> None:
    t0 = time.perf_counter()
    _create(client, cluster_id)
    t1 = time.perf_counter()
    to_available = _wait_status(raw, cluster_id, "available")
    t2 = time.perf_counter()
    _delete(client, cluster_id)
    t3 = time.perf_counter()
    to_gone = _wait_status(raw, cluster_id, None)
    t4 = time.perf_counter()
    if out is not None:
        out.count += 1
        out.seconds += t4 - t0
        out.create_call.append(t1 - t0)
        out.to_available.append(to_available)
        out.delete_call.append(t3 - t2)
        out.to_gone.append(to_gone)


def our_pairs(server: Server, n: int) -> Pairs:
    client, raw = server.client(), server.raw()
    try:
        our_pair(client, raw, "bench-warm-0", None)
        out = Pairs()
        for i in range(n):
            our_pair(client, raw, f"bench-life-{i:03d}", out)
        return out
    finally:
        raw.close()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def bare_redis_first_ping(n: int) -> list[float]:
    """Seconds from Popen to the first answered PING of a bare redis-server, n times."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as cwd:
        for _ in range(n):
            port = free_port()
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                deadline = t0 + PING_TIMEOUT
                while not _ping(port):
                    if proc.poll() is not None or time.perf_counter() > deadline:
                        raise RuntimeError(f"bare redis-server on port {port} never answered PING")
                    time.sleep(0.0005)
                samples.append(time.perf_counter() - t0)
            finally:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
    return samples


def run(lab: Lab) -> list[Table]:
    n = 5 if lab.quick else 20
    moto_seconds = 0.5 if lab.quick else 2.0
    ours, moto = lab.ours, lab.moto
    lab.reset()
    try:
        assert ours.proc is not None and moto.proc is not None
        log(f"lifecycle: moto, create+delete pairs for {moto_seconds:g} s")
        watch = CpuWatch(moto.proc.pid)
        m = moto_pairs(moto, moto_seconds)
        moto_cpu = watch.summary()
        log(f"lifecycle: elasticache-local, {n} pairs with real nodes")
        watch = CpuWatch(ours.proc.pid)
        o = our_pairs(ours, n)
        ours_cpu = watch.summary()
    finally:
        lab.reset()
    log(f"lifecycle: bare redis-server first PING, {n} times")
    bare = bare_redis_first_ping(n)

    pairs = Table("create/delete pairs: ours = create, wait available, delete, wait NotFound (real "
                  "node); moto = the two API calls only", "moto")
    pairs.add(Row("pairs/s", o.rate, m.rate, target=ratio_at_least(2)))
    pairs.add(Row("CreateCacheCluster call p50", median(o.create_call) * 1e3, median(m.create_call) * 1e3,
                  "ms"))
    pairs.add(Row("DeleteCacheCluster call p50", median(o.delete_call) * 1e3, median(m.delete_call) * 1e3,
                  "ms"))
    pairs.add(Row("ours: delete response -> NotFound p50", median(o.to_gone) * 1e3, None, "ms"))
    pairs.notes.append(f"pairs measured: ours {o.count} (boto3 calls, raw describe polls every "
                       f"{POLL * 1e3:g} ms), moto {m.count} in {m.seconds:.1f} s")
    ceiling = 1 / median(bare) if bare else 0.0
    pairs.notes.append(f"a pair of ours includes starting a real redis-server: with zero overhead of ours, "
                       f"1 / bare redis start ({median(bare) * 1e3:.1f} ms) = {ceiling:.0f} pairs/s, "
                       f"{ceiling / m.rate if m.rate else 0:.2f}x moto")
    pairs.notes.append(f"ours: {ours_cpu}")
    pairs.notes.append(f"moto: {moto_cpu}")

    ready = Table(f"CreateCacheCluster response -> available (ours, n={n}) vs bare redis-server "
                  "Popen -> first PING", "bare redis-server")
    ready.add(Row("median", median(o.to_available) * 1e3, median(bare) * 1e3, "ms",
                  target=ours_below(250, "ms")))
    ready.add(Row("p90", percentile(o.to_available, 90) * 1e3, percentile(bare, 90) * 1e3, "ms"))
    ready.add(Row("max", max(o.to_available) * 1e3, max(bare) * 1e3, "ms"))
    return [pairs, ready]
