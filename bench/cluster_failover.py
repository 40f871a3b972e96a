"""Per-shard failover of a cluster-mode group (issue 13): the outage a redis-py RedisCluster client
writing to one shard sees when that shard's primary is killed (kill -9), beside the same client
against a bare Redis Cluster doing its own failover (cluster-node-timeout 1000 ms, its replicas'
election), measured in the same run.

Both sides: 3 shards x 1 replica of the same redis-server, each node on its own loopback address.
The writer SETs keys of one hash tag (so one slot of the shard under test) in a tight loop, with
socket timeouts of 0.2 s; its client is RedisCluster started from the configuration endpoint
(ours) or from a node (the anchor), with its own retries and slot-map refreshes. The outage is
the longest time after the fault without an acknowledged write (the client's own retries, which
may hide every error from the application, included). Between trials each side is back to 6
nodes with cluster_state:ok: ours by itself; for the anchor the benchmark restarts the killed
node on its nodes.conf (it rejoins as a replica). Every key acknowledged is read back
after each trial (missing ones are counted: a kill -9 may lose what the replica had not got).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from bench.failover import DOWN_AFTER, HEALTH_INTERVAL, NODE_SETTINGS, REDIS, poll
from bench.lab import Lab, Ours, log
from bench.report import Row, Table, Target, median

NODE_NETWORK = "127.0.160.0/24"  # ours (the Lab's and bench/failover.py's are elsewhere)
ENDPOINT_NETWORK = "127.0.161.0/24"
BARE_HOSTS = tuple(f"127.0.162.{i}" for i in range(1, 7))
PORT = 6379
GROUP_ID = "bench-cluster-failover"
SOCKET_TIMEOUT = 0.2
NODE_TIMEOUT_MS = 1000  # the bare cluster's cluster-node-timeout (its failure detection)
READY_TIMEOUT = 90.0
RECOVER_TIMEOUT = 30.0
WARMUP = 0.5  # seconds of acknowledged writes before the fault


class ClusterServer(Ours):
    name = "elasticache-local-cluster-failover"
    networks = (NODE_NETWORK, ENDPOINT_NETWORK)

    def settings(self) -> dict[str, str]:  # as bench/failover.py: the same failure detection
        return {"ELASTICACHE_LOCAL_DOWN_AFTER": str(DOWN_AFTER),
                "ELASTICACHE_LOCAL_HEALTH_INTERVAL": str(HEALTH_INTERVAL)}


def _tag_in(first: int, last: int) -> str:
    """A hash tag whose slot is in first..last: every key of the writer goes to that shard."""
    return next(f"s{i}" for i in range(100_000) if first <= key_slot(f"{{s{i}}}".encode()) <= last)


class ShardWriter(threading.Thread):
    def __init__(self, make_client: Callable[[], RedisCluster], tag: str) -> None:
        super().__init__(name="bench-cluster-writer", daemon=True)
        self._make_client, self.tag = make_client, tag
        self.acked: list[int] = []
        self.ack_times: list[float] = []  # perf_counter() of each acknowledgement
        self.errors = 0
        self.halt = threading.Event()

    def key(self, seq: int) -> str:
        return f"{{{self.tag}}}:{seq:09d}"

    def run(self) -> None:
        client = self._make_client()
        seq = 0
        try:
            while not self.halt.is_set():
                try:
                    client.set(self.key(seq), "v")
                except (redis.RedisError, OSError):
                    self.errors += 1
                    seq += 1  # it may have been applied: never reuse a key
                    time.sleep(0.002)
                    continue
                self.ack_times.append(time.perf_counter())
                self.acked.append(seq)
                seq += 1
        finally:
            client.close()

    def acked_since(self, t: float) -> int:
        return sum(1 for a in self.ack_times[-2000:] if a > t)

    def outage(self, fault: float) -> float | None:
        """The longest time after the fault without an acknowledgement: what the application
        waited, the client's own retries and slot-map refreshes included (they may hide every
        error from it)."""
        times = self.ack_times
        after = [i for i, t in enumerate(times) if t > fault]
        if not after:
            return None
        gaps = [times[i] - max(times[i - 1] if i else fault, fault) for i in after]
        return max(gaps)


def _client(host: str, port: int) -> RedisCluster:
    return RedisCluster(host=host, port=port, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT)


def _primary_of(host: str, port: int, slot: int) -> tuple[str, int]:
    with redis.Redis(host=host, port=port, socket_timeout=2) as plain:
        for first, last, master, *_ in plain.execute_command("CLUSTER SLOTS"):
            if int(first) <= slot <= int(last):
                return master[0].decode() if isinstance(master[0], bytes) else master[0], int(master[1])
    raise RuntimeError(f"no node serves slot {slot}")


def _pid(host: str, port: int) -> int:
    with redis.Redis(host=host, port=port, socket_timeout=2) as node:
        return int(node.info("server")["process_id"])


def _all_ok(addresses: list[tuple[str, int]], nodes: int) -> bool:
    for host, port in addresses:
        try:
            with redis.Redis(host=host, port=port, socket_timeout=1) as node:
                info = node.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != nodes:
                    return False
                listed = node.execute_command("CLUSTER NODES")
                # whole flags: `nofailover` is not a failure
                if any({"fail", "fail?"} & set(n["flags"].split(",")) for n in listed.values()):
                    return False
        except (redis.RedisError, OSError):
            return False
    return True


def _trial(entry: tuple[str, int], tag: str, other: str) -> tuple[float | None, int, int, int, tuple[str, int]]:
    """kill -9 the primary serving `tag` under a writer, beside a writer to another shard (`other`):
    (outage, acked, missing, the other writer's errors, the node killed)."""
    victim = _primary_of(*entry, key_slot(f"{{{tag}}}".encode()))
    pid = _pid(*victim)
    writer, bystander = ShardWriter(lambda: _client(*entry), tag), ShardWriter(lambda: _client(*entry), other)
    writer.start()
    bystander.start()
    try:
        poll("writer under way", lambda: True if len(writer.acked) > 100 else None, 10.0, 0.01)
        time.sleep(WARMUP)
        fault = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):  # writes resumed well after the fault
            poll("writes after the fault", lambda: True if writer.acked_since(fault) >= 500 else None,
                 RECOVER_TIMEOUT, 0.01)
    finally:
        for w in (writer, bystander):
            w.halt.set()
            w.join(10)
    reader = _client(*entry)
    try:
        missing = 0
        for i in range(0, len(writer.acked), 500):
            chunk = writer.acked[i:i + 500]
            missing += sum(1 for v in reader.mget_nonatomic([writer.key(s) for s in chunk]) if v is None)
    finally:
        reader.close()
    return writer.outage(fault), len(writer.acked), missing, bystander.errors, victim


# ---- the anchor: a bare Redis Cluster -----------------------------------------------------------


class BareCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-bare-cluster-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_node(self, host: str) -> None:
        data = self.dir / host
        data.mkdir(exist_ok=True)
        conf = [*NODE_SETTINGS, f"bind {host}", f"port {PORT}", f"dir {data}", "cluster-enabled yes",
                "cluster-config-file nodes.conf", f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                # Its bus connections leave from 127.0.0.1: without this, peers would record that.
                f"cluster-announce-ip {host}"]
        (data / "redis.conf").write_text("\n".join(conf) + "\n")
        with open(data / "log", "ab") as out:
            self.procs[host] = subprocess.Popen([REDIS, str(data / "redis.conf")], stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        poll(f"{host} answers", lambda: True if _answers(host) else None, 10.0, 0.05)

    def create(self) -> None:
        for host in BARE_HOSTS:
            self.start_node(host)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"{h}:{PORT}" for h in BARE_HOSTS),
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        self.ready()

    def ready(self) -> None:
        poll("bare cluster ok", lambda: True if _all_ok([(h, PORT) for h in BARE_HOSTS], 6) else None,
             READY_TIMEOUT, 0.1)

    def restart(self, host: str) -> None:
        old = self.procs.get(host)
        if old is not None:
            old.wait(10)
        self.start_node(host)  # on its nodes.conf: it rejoins, as a replica of the node that took over

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(host: str) -> bool:
    try:
        with redis.Redis(host=host, port=PORT, socket_timeout=0.5) as node:
            return bool(node.ping())
    except (redis.RedisError, OSError):
        return False


# ---- ours -------------------------------------------------------------------------------------


def _ours_ready(ec: Any) -> list[tuple[str, int]] | None:
    group = ec.describe_replication_groups(ReplicationGroupId=GROUP_ID)["ReplicationGroups"][0]
    if group["Status"] != "available":
        return None
    nodes = [(m["ReadEndpoint"]["Address"], m["ReadEndpoint"]["Port"]) for g in group["NodeGroups"]
             for m in g["NodeGroupMembers"]]
    return nodes if len(nodes) == 6 and _all_ok(nodes, 6) else None


def run(lab: Lab) -> list[Table]:
    trials = 2 if lab.quick else 5
    tag = _tag_in(5462, 10922)  # shard 0002 on ours; whichever shard serves it on the anchor
    other = _tag_in(0, 100)  # shard 0001 on ours, another shard on the anchor: it must not notice
    ours_outages, bare_outages, lost, noticed = [], [], [0, 0], [0, 0]
    server, bare = ClusterServer(), BareCluster()
    try:
        server.start()
        ec = server.client()
        ec.create_replication_group(ReplicationGroupId=GROUP_ID, ReplicationGroupDescription="bench",
                                    Engine="redis", EngineVersion="7.0", CacheNodeType="cache.t3.micro",
                                    NumNodeGroups=3, ReplicasPerNodeGroup=1)
        poll("ours available", lambda: _ours_ready(ec), READY_TIMEOUT, 0.1)
        config = ec.describe_replication_groups(ReplicationGroupId=GROUP_ID)["ReplicationGroups"][0][
            "ConfigurationEndpoint"]
        entry = (config["Address"], config["Port"])
        bare.create()
        for n in range(trials):
            outage, acked, missing, errors, _ = _trial(entry, tag, other)
            ours_outages.append(outage if outage is not None else float("nan"))
            lost[0] += missing
            noticed[0] += errors
            log(f"ours trial {n + 1}: outage {outage}, {acked} acked, {missing} missing")
            poll("ours back to 6 nodes", lambda: _ours_ready(ec), READY_TIMEOUT, 0.1)
            serving = _primary_of(BARE_HOSTS[0], PORT, key_slot(f"{{{tag}}}".encode()))
            start = next((h, PORT) for h in BARE_HOSTS if (h, PORT) != serving)  # it stays up to read back
            outage, acked, missing, errors, victim = _trial(start, tag, other)
            bare_outages.append(outage if outage is not None else float("nan"))
            lost[1] += missing
            noticed[1] += errors
            log(f"bare trial {n + 1}: outage {outage}, {acked} acked, {missing} missing")
            bare.restart(victim[0])
            bare.ready()
    finally:
        bare.close()
        server.stop()
    table = Table(f"kill -9 of a shard's primary, RedisCluster client writing to that shard ({trials} trials, "
                  "median)", "bare Redis Cluster, cluster-node-timeout 1000 ms")
    table.add(Row("outage", median(ours_outages), median(bare_outages), "s", Target("<= 0.25x", "ratio", "<=", 0.25),
                  note=f"ours {[round(o, 3) for o in ours_outages]}, bare {[round(o, 3) for o in bare_outages]}"))
    table.add(Row("acknowledged writes lost (all trials)", lost[0], lost[1]))
    table.add(Row("write errors seen by a client of another shard (all trials)", noticed[0], noticed[1],
                  target=Target("ours: 0", "ours", "<=", 0)))
    return [table]
