"""Online resharding: keys moved per second when a 3-shard Redis Cluster grows to 4, our slot
mover (engine/slot_migration.py, what the reconciler runs for ModifyReplicationGroupShardConfiguration)
beside `redis-cli --cluster reshard` (its defaults), each moving the slots redis-cli picks (the
lowest of each source, in proportion) to the new empty master.

Both sides run on the same kind of cluster, built fresh by this bench for every turn: four bare
redis-servers on 127.0.0.1 (cluster-enabled, no persistence), slots 0-16383 split evenly over
three of them, 1,000,000 keys (100,000 with --quick) of 16 bytes loaded. Sides are taken in
turns (ours, redis-cli, ours, redis-cli...); each turn's rate is keys moved / seconds of the
move alone (the load and the cluster's agreement are not counted). Target: >= 1.0x.

Run alone: `.venv/bin/python -m bench --only reshard [--quick]`.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from bench.lab import Lab, _stop_process, free_port, log, wait_until
from bench.report import Row, Table, median, ratio_at_least
from engine import SLOTS, even_ranges
from engine.access import Reach
from engine.cluster import key_slot
from engine.slot_migration import move_slots

VALUE = "v" * 16


class _Cluster:
    """Four bare cluster-enabled redis-servers; three serve every slot, the fourth none."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ports = [free_port() for _ in range(4)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir(parents=True)
            self.procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir), "--save", "",
                 "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000",
                 "--cluster-port", str(free_port()),  # port + 10000 may be past 65535
                 "--logfile", str(node_dir / "log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            wait_until(f"redis-server :{port}", lambda p=port: self._pings(p), 10.0, 0.01)
        for port, (first, last) in zip(self.ports, even_ranges(3), strict=False):
            self.node(port).execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in self.ports[1:]:
            self.node(port).execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])
        wait_until("the cluster agrees", self._agreed, 30.0, 0.05)

    def _pings(self, port: int) -> bool:
        try:
            return bool(self.node(port).ping())
        except redis.RedisError:
            return False

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)

    def ids(self) -> list[str]:
        return [self.node(p).execute_command("CLUSTER", "MYID").decode() for p in self.ports]

    def _agreed(self) -> bool:
        maps = set()
        for port in self.ports:
            info = self.node(port).execute_command("CLUSTER", "INFO").decode()
            nodes = self.node(port).execute_command("CLUSTER", "NODES").decode()
            if "cluster_state:ok" not in info or len(nodes.splitlines()) != 4 or "handshake" in nodes:
                return False
            maps.add(frozenset((line.split()[0], tuple(line.split()[8:])) for line in nodes.splitlines()))
        return len(maps) == 1

    def load(self, keys: int) -> None:
        owner = {}
        for port, (first, last) in zip(self.ports, even_ranges(3), strict=False):
            owner.update(dict.fromkeys(range(first, last + 1), port))
        pipes = {p: self.node(p).pipeline(transaction=False) for p in self.ports[:3]}
        for i in range(keys):
            key = f"key:{i}"
            pipes[owner[key_slot(key)]].set(key, VALUE)
            if i % 20_000 == 19_999:
                for pipe in pipes.values():
                    pipe.execute()
        for pipe in pipes.values():
            pipe.execute()

    def reshard_plan(self, count: int) -> list[tuple[int, list[int]]]:
        """The slots `redis-cli --cluster reshard` takes for `count` slots from the three
        sources: the largest first rounded up, the others down, each its lowest slots."""
        sources = sorted(((last - first + 1, port, first) for port, (first, last) in
                          zip(self.ports, even_ranges(3), strict=False)), reverse=True)
        plan = []
        for index, (size, port, first) in enumerate(sources):
            share = count / SLOTS * size
            n = math.ceil(share) if index == 0 else math.floor(share)
            plan.append((port, list(range(first, first + n))))
        return plan

    def stop(self) -> None:
        for proc in self.procs:
            _stop_process(proc, signal.SIGTERM)
        self.procs = []


@contextlib.contextmanager
def _cluster(keys: int) -> Iterator[_Cluster]:
    directory = Path(tempfile.mkdtemp(prefix="bench-reshard-"))
    cluster = _Cluster(directory)
    try:
        cluster.start()
        cluster.load(keys)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _ours(cluster: _Cluster, slots: int) -> tuple[int, float]:
    target = Reach("127.0.0.1", cluster.ports[3])
    plan = cluster.reshard_plan(slots)
    started = time.perf_counter()
    moved = 0
    for port, chosen in plan:
        others = [Reach("127.0.0.1", p) for p in cluster.ports[:3] if p != port]
        moved += move_slots(Reach("127.0.0.1", port), target, others, chosen)
    return moved, time.perf_counter() - started


def _redis_cli(cluster: _Cluster, slots: int) -> tuple[int, float]:
    ids = cluster.ids()
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed")
    before = cluster.node(cluster.ports[3]).dbsize()
    started = time.perf_counter()
    subprocess.run(
        [binary, "--cluster", "reshard", f"127.0.0.1:{cluster.ports[0]}", "--cluster-from", ",".join(ids[:3]),
         "--cluster-to", ids[3], "--cluster-slots", str(slots), "--cluster-yes"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
    elapsed = time.perf_counter() - started
    return int(cluster.node(cluster.ports[3]).dbsize()) - int(before), elapsed


def run(lab: Lab) -> list[Table]:
    keys = 100_000 if lab.quick else 1_000_000
    turns = 1 if lab.quick else 2
    slots = SLOTS // 4  # 3 -> 4 shards: the new one's even share
    rates: dict[str, list[float]] = {"ours": [], "redis-cli": []}
    notes = []
    for turn in range(turns):
        for side, mover in (("ours", _ours), ("redis-cli", _redis_cli)):
            with _cluster(keys) as cluster:
                moved, seconds = mover(cluster, slots)
                on_target = int(cluster.node(cluster.ports[3]).dbsize())
                if on_target != moved:
                    raise RuntimeError(f"{side}: {moved} keys reported moved, {on_target} on the new master")
                rates[side].append(moved / seconds)
                log(f"reshard turn {turn + 1} {side}: {moved} keys in {seconds:.2f} s")
                notes.append(f"turn {turn + 1} {side}: {moved:,} keys in {seconds:.2f} s")
    table = Table(f"Resharding 3 -> 4 shards, {keys:,} keys, {slots} slots to the new master (median of {turns})",
                  "redis-cli --cluster reshard")
    table.add(Row("keys moved per second", median(rates["ours"]), median(rates["redis-cli"]), "keys/s",
                  ratio_at_least(1.0)))
    table.notes = [*notes, "redis-cli with its defaults (--cluster-pipeline 10); ours: 1000 keys per MIGRATE, "
                           "256 slots per pipelined round; bare redis-servers on 127.0.0.1, fresh for each turn"]
    return [table]
