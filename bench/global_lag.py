"""Cross-region replication lag of a global datastore (issue 15) under 10,000 writes/s, beside its
anchor measured in the same run.

Ours: a replication group in us-east-1 (the primary region) and a secondary group in eu-west-1
joined to it with CreateReplicationGroup GlobalReplicationGroupId; the secondary's primary node
replicates from the primary group's primary endpoint. The anchor: two bare redis-servers of the
same binary, the second `REPLICAOF` the first, which is what the cross-region link is made of.

A writer SETs 100-byte values at 10,000 writes/s (pipelines of 100 every 10 ms) on the primary
side; a prober writes a timestamp every 20 ms and a reader on the other side polls for it: lag is
the time from the write to the first read that sees it. The two sides are measured in turns.
The issue's target: p99 < 100 ms.

Run alone: `.venv/bin/python -m bench --only global_lag [--quick]`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import redis

from bench.lab import Lab, free_port, log, wait_until
from bench.report import Row, Table, median, ours_below

WRITES_PER_SECOND = 10_000
BATCH = 100
VALUE = b"x" * 100
PROBE_EVERY = 0.02
ANCHOR_HOSTS = ("127.0.153.1", "127.0.153.2")


class Load:
    """The writer at WRITES_PER_SECOND, in a thread, for the `with` block."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.written = client, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        interval = BATCH / WRITES_PER_SECOND
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            pipe = self.client.pipeline(transaction=False)
            for _ in range(BATCH):
                pipe.set(f"load:{i % 100_000}", VALUE)
                i += 1
            pipe.execute()
            self.written += BATCH
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def lags(writer: redis.Redis, reader: redis.Redis, probes: int) -> tuple[list[float], float]:
    """Seconds from each probe's write to the first read of it on the other side, under the load;
    and the write rate the load reached."""
    out: list[float] = []
    with Load(redis.Redis(connection_pool=writer.connection_pool)) as load:
        started = time.monotonic()
        for n in range(probes):
            token = f"{n}-{time.monotonic_ns()}"
            sent = time.monotonic()
            writer.set("probe", token)
            deadline = sent + 5.0
            while reader.get("probe") != token.encode():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"probe {n} not replicated within 5 s")
                time.sleep(0.0002)
            out.append(time.monotonic() - sent)
            time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - sent)))
        rate = load.written / (time.monotonic() - started)
    return out, rate


@contextlib.contextmanager
def bare_pair() -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Two redis-servers, the second a replica of the first; stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    work = Path(tempfile.mkdtemp(prefix="bench-global-"))
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    try:
        for i, (host, port) in enumerate(zip(ANCHOR_HOSTS, ports, strict=True)):
            argv = [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
                    "--dir", str(work), "--dbfilename", f"{i}.rdb", "--replica-announce-ip", host]
            if i == 1:
                argv += ["--replicaof", ANCHOR_HOSTS[0], str(ports[0])]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        primary = redis.Redis(host=ANCHOR_HOSTS[0], port=ports[0], socket_timeout=5)
        replica = redis.Redis(host=ANCHOR_HOSTS[1], port=ports[1], socket_timeout=5)

        def linked() -> bool:
            with contextlib.suppress(redis.RedisError):
                return replica.info("replication").get("master_link_status") == "up"
            return False

        wait_until("the anchor replica linked", linked, 20.0, 0.05)
        yield primary, replica
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _client(url: str, region: str) -> Any:
    return boto3.client("elasticache", endpoint_url=url, region_name=region, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@contextlib.contextmanager
def global_datastore(lab: Lab) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """(primary region's primary endpoint, secondary region's primary endpoint) of a global datastore."""
    ours = lab.ours
    us, eu = _client(ours.url, "us-east-1"), _client(ours.url, "eu-west-1")
    fast = {"Delay": 0.2, "MaxAttempts": 300}
    group = {"ReplicationGroupDescription": "bench", "NumCacheClusters": 2, "AutomaticFailoverEnabled": True,
             "MultiAZEnabled": True}
    try:
        us.create_replication_group(ReplicationGroupId="lag", Engine="redis",
                                    CacheNodeType="cache.r6g.large", **group)
        us.get_waiter("replication_group_available").wait(
            ReplicationGroupId="lag", WaiterConfig=fast)
        gid = us.create_global_replication_group(
            GlobalReplicationGroupIdSuffix="lag", PrimaryReplicationGroupId="lag")[
            "GlobalReplicationGroup"]["GlobalReplicationGroupId"]
        eu.create_replication_group(ReplicationGroupId="lag", ReplicationGroupDescription="bench",
                                    GlobalReplicationGroupId=gid, NumCacheClusters=2)

        def associated() -> bool:
            return bool(us.describe_global_replication_groups(
                GlobalReplicationGroupId=gid)["GlobalReplicationGroups"][0]["Status"] == "available")

        wait_until("the global datastore available", associated, 60.0, 0.2)

        def endpoint(client: Any) -> redis.Redis:
            ng = client.describe_replication_groups(ReplicationGroupId="lag")[
                "ReplicationGroups"][0]["NodeGroups"][0]
            return redis.Redis(host=ng["PrimaryEndpoint"]["Address"], port=ng["PrimaryEndpoint"]["Port"],
                               socket_timeout=5)

        yield endpoint(us), endpoint(eu)
    finally:
        ours.reset()


def run(lab: Lab) -> list[Table]:
    probes = 100 if lab.quick else 500
    rounds = 2 if lab.quick else 3
    ours_lags: list[float] = []
    anchor_lags: list[float] = []
    rates: list[float] = []
    with global_datastore(lab) as (primary, secondary), bare_pair() as (bare_primary, bare_replica):
        for r in range(rounds):  # the two sides in turns
            log(f"round {r + 1}/{rounds}: ours")
            got, rate = lags(primary, secondary, probes)
            ours_lags += got
            rates.append(rate)
            log(f"round {r + 1}/{rounds}: bare redis-server replica")
            got, rate = lags(bare_primary, bare_replica, probes)
            anchor_lags += got
            rates.append(rate)
    table = Table("Global datastore: cross-region replication lag under load", "bare redis-server replica")

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    table.add(Row("lag p50", pct(ours_lags, 0.50), pct(anchor_lags, 0.50), "ms"))
    table.add(Row("lag p99", pct(ours_lags, 0.99), pct(anchor_lags, 0.99), "ms", ours_below(100, "ms")))
    table.add(Row("lag max", max(ours_lags) * 1000, max(anchor_lags) * 1000, "ms"))
    table.notes.append(f"{len(ours_lags)} probes a side, every {PROBE_EVERY * 1000:.0f} ms, under a writer at "
                       f"{median(rates):,.0f} writes/s (asked: {WRITES_PER_SECOND:,}); both regions on this machine.")
    return [table]
