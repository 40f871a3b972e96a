"""Backups and restores of 1 GB through the service, beside what a bare redis-server does by itself.

Ours is the live service (lab.ours: process runtime) driven through its API: boto3 for the
creates and deletes, raw DescribeSnapshots / DescribeCacheClusters Query calls to wait (one
every POLL seconds, the anchors are polled at the same rate). The data is 1 GB (`--quick`:
100 MB) of 1 KB values of random bytes (an RDB's LZF compresses nothing of them), the same keys
and bytes on both sides, SET over a pipelined connection straight to the node.

(a) Save. Ours: a cache.r6g.large cluster holding the data; CreateSnapshot -> DescribeSnapshots
    reads `available`. Anchor: a bare redis-server holding the same data; BGSAVE until
    rdb_bgsave_in_progress:0 and LASTSAVE moved. Speed = RDB bytes / seconds.
(b) Restore. Ours: CreateCacheCluster SnapshotName=(a)'s snapshot -> DescribeCacheClusters reads
    `available` (then DBSIZE is checked; the cluster is deleted, and gone, before the next turn).
    Anchor: a bare redis-server started on that snapshot's file (hard-linked as its dump.rdb),
    until PING answers PONG rather than LOADING.
(c) A writer (SET of 100 bytes on one connection, in its own process, as fast as it goes)
    through a replication group's primary endpoint (primary + 1 replica, restored from (a)'s
    snapshot so it holds the same 1 GB): its latency while CreateSnapshot(ReplicationGroupId)
    runs until `available` (the service saves from the replica), beside windows of the same
    length (at most NONE_MAX) with no snapshot; the order of the two alternates across turns. For context, a
    BGSAVE on the replica node itself.
Sides are taken in turns, so a change in the machine's load meets both.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.lab import CpuWatch, Lab, Ours, RawClient, free_port, log, wait_until
from bench.report import Row, Table, Target, median, percentile, ratio_at_least
from engine.access import Reach
from engine.adapters.redis import RespError, execute, parse_info

REDIS = "redis-server"
NODE_TYPE = "cache.r6g.large"  # 13.07 GiB for data: 1 GB fits with room to spare
TURNS = 2
KEY_BYTES = 1000
MB = 1 << 20
POLL = 0.02  # seconds between two looks, on both sides
WAIT_TIMEOUT = 300.0
NONE_MAX = 20.0  # seconds: a window with no snapshot (100,000s of samples: enough for a p99)
RECHECK = 1.5  # seconds: longer than the service's DOWN_AFTER
CLUSTER = "bench-snap-src"
GROUP = "bench-snap-rg"

# The writer of (c): SETs on one connection until stdin closes, then (end time, latency) pairs
# as raw doubles (a minute of samples is a million pairs: no JSON).
_WRITER = r"""
import socket, sys, threading, time
from array import array
host, port = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
s = socket.create_connection((host, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
value = b"v" * 100; out = array("d"); i = 0
while not stop.is_set():
    key = b"w:%d" % (i % 10000); i += 1
    t0 = time.monotonic()
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value))
    reply = s.recv(64)
    t1 = time.monotonic()
    assert reply == b"+OK\r\n", reply
    out.append(t1); out.append(t1 - t0)
sys.stdout.buffer.write(out.tobytes())
"""

_SNAPSHOT_STATUS = re.compile(rb"<SnapshotStatus>([^<]*)</SnapshotStatus>")


def ratio_at_most(limit: float) -> Target:
    return Target(f"<= {limit:g}x", "ratio", "<=", limit)


class Node:
    """A redis-server at host:port, spoken to one command at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def cmd(self, *args: str, timeout: float = 600.0) -> object:
        return execute(Reach(self.host, self.port), *args, timeout=timeout)

    def info(self, section: str) -> dict[str, str]:
        reply = self.cmd("INFO", section)
        return parse_info(reply if isinstance(reply, bytes | str) else b"")

    def dbsize(self) -> int:
        reply = self.cmd("DBSIZE")
        assert isinstance(reply, int), reply
        return reply


class Bare(Node):
    """A bare redis-server on 127.0.0.1 with the settings our nodes have for saves."""

    def __init__(self, directory: Path, *extra: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__("127.0.0.1", free_port())
        self.dir = directory
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
             "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
             "--maxmemory", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def answers(self) -> bool:
        """PONG: up and done loading (a loading server answers -LOADING)."""
        try:
            return self.cmd("PING", timeout=1.0) == "PONG"
        except (OSError, RespError):
            if self.proc.poll() is not None:
                raise RuntimeError(f"bare redis-server on port {self.port} exited") from None
            return False

    def stop(self) -> None:
        self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@contextlib.contextmanager
def bare_server(directory: Path) -> Iterator[Bare]:
    server = Bare(directory)
    try:
        wait_until("bare redis-server up", server.answers, 10.0, 0.005)
        yield server
    finally:
        server.stop()


def _no_save_child(node: Node) -> bool:
    return node.info("persistence").get("rdb_bgsave_in_progress") == "0"


def bgsave(server: Node) -> float:
    """BGSAVE until rdb_bgsave_in_progress:0 and LASTSAVE moved (polled every POLL seconds)."""
    before = server.cmd("LASTSAVE")
    t0 = time.perf_counter()
    server.cmd("BGSAVE")
    wait_until("BGSAVE", lambda: _no_save_child(server) and server.cmd("LASTSAVE") != before, WAIT_TIMEOUT, POLL)
    seconds = time.perf_counter() - t0
    if server.info("persistence").get("rdb_last_bgsave_status") != "ok":
        raise RuntimeError("BGSAVE failed")
    return seconds


def fill(node: Node, keys: int, pool: bytes) -> None:
    """`keys` SETs of KEY_BYTES bytes each (slices of `pool`: the same data on every node filled),
    pipelined in batches over one connection."""
    batch = 1000
    with socket.create_connection((node.host, node.port), timeout=60) as sock:
        for first in range(0, keys, batch):
            commands = []
            for i in range(first, min(keys, first + batch)):
                key = b"key:%d" % i
                offset = (i * 7919) % MB
                commands.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                                % (len(key), key, KEY_BYTES, pool[offset:offset + KEY_BYTES]))
            sock.sendall(b"".join(commands))
            expected = b"+OK\r\n" * len(commands)
            got = b""
            while len(got) < len(expected):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection while being filled")
                got += chunk
            if got != expected:
                raise RuntimeError(f"unexpected replies while filling: {got[:80]!r}")


# ---- the service ------------------------------------------------------------------------------


class Service:
    """The calls the benchmark makes on the live service."""

    def __init__(self, server: Ours) -> None:
        self.server = server
        self.client: Any = server.client()
        self.raw: RawClient = server.raw()

    def close(self) -> None:
        self.raw.close()

    def snapshot_status(self, name: str) -> str | None:
        status, data = self.raw.post(
            f"Action=DescribeSnapshots&Version=2015-02-02&SnapshotName={name}".encode())
        if status == 404 or b"SnapshotNotFoundFault" in data:
            return None
        if status != 200:
            raise RuntimeError(f"DescribeSnapshots {name}: HTTP {status}: {data[:300]!r}")
        m = _SNAPSHOT_STATUS.search(data)
        return m.group(1).decode() if m else "?"

    def await_snapshot(self, name: str) -> float:
        def done() -> bool:
            status = self.snapshot_status(name)
            if status == "failed":
                raise RuntimeError(f"snapshot {name} failed")
            return status == "available"

        return wait_until(f"snapshot {name} available", done, WAIT_TIMEOUT, POLL)

    def await_cluster(self, cluster_id: str, want: str | None) -> float:
        def done() -> bool:
            status = self.raw.cluster_status(cluster_id)
            if status in ("restore-failed", "create-failed", "incompatible-network"):
                raise RuntimeError(f"cache cluster {cluster_id}: {status}")
            return status == want

        return wait_until(f"{cluster_id} {want or 'gone'}", done, WAIT_TIMEOUT, POLL)

    def create_cluster(self, cluster_id: str, snapshot: str | None = None) -> None:
        extra = {"SnapshotName": snapshot} if snapshot else {}
        self.client.create_cache_cluster(CacheClusterId=cluster_id, Engine="redis", CacheNodeType=NODE_TYPE,
                                         NumCacheNodes=1, **extra)

    def delete_cluster(self, cluster_id: str) -> None:
        self.client.delete_cache_cluster(CacheClusterId=cluster_id)
        self.await_cluster(cluster_id, None)

    def node(self, cluster_id: str) -> Node:
        cluster = self.client.describe_cache_clusters(CacheClusterId=cluster_id,
                                                      ShowCacheNodeInfo=True)["CacheClusters"][0]
        endpoint = cluster["CacheNodes"][0]["Endpoint"]
        return Node(endpoint["Address"], int(endpoint["Port"]))

    def group(self, group_id: str) -> dict[str, Any]:
        groups: list[dict[str, Any]] = self.client.describe_replication_groups(
            ReplicationGroupId=group_id)["ReplicationGroups"]
        return groups[0]

    def await_group(self, group_id: str) -> None:
        def done() -> bool:
            status = self.group(group_id)["Status"]
            if status in ("create-failed", "restore-failed"):
                raise RuntimeError(f"replication group {group_id}: {status}")
            return status == "available"

        wait_until(f"{group_id} available", done, WAIT_TIMEOUT, 0.1)

    def delete_group(self, group_id: str) -> None:
        self.client.delete_replication_group(ReplicationGroupId=group_id)

        def gone() -> bool:
            try:
                self.group(group_id)
            except self.client.exceptions.ReplicationGroupNotFoundFault:
                return True
            return False

        wait_until(f"{group_id} gone", gone, WAIT_TIMEOUT, 0.1)

    def delete_snapshot(self, name: str) -> None:
        self.client.delete_snapshot(SnapshotName=name)
        wait_until(f"snapshot {name} gone", lambda: self.snapshot_status(name) is None, WAIT_TIMEOUT, POLL)

    def logs(self, cluster_id: str, lines: int = 30) -> str:
        """The ends of the service's log and of the cluster's node log (a failure's story)."""
        out = []
        for path in [self.server.dir / "server.log",
                     *(self.server.dir / "data" / "nodes").glob(f"*-{cluster_id}-0001/node.log")]:
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out += [f"--- {path}", *text[-lines:]]
        return "\n".join(out)

    def snapshot_file(self, name: str) -> Path:
        """The snapshot's RDB under the service's DATA_DIR/snapshots/<account>/<region>/."""
        found = list((self.server.dir / "data" / "snapshots").glob(f"*/*/{name}.rdb"))
        if len(found) != 1:
            raise RuntimeError(f"snapshot {name}: expected one file, found {found}")
        return found[0]


def _turns(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# ---- (a) save ---------------------------------------------------------------------------------


def part_a(root: Path, svc: Service, keys: int, pool: bytes) -> tuple[Table, str, list[float]]:
    """(a)'s table, the snapshot (b) and (c) restore from, and our save times."""
    log(f"snapshots: cluster {CLUSTER} ({NODE_TYPE}) and a bare redis-server, {keys:,} keys of "
        f"{KEY_BYTES} random bytes into each")
    svc.create_cluster(CLUSTER)
    svc.await_cluster(CLUSTER, "available")
    node = svc.node(CLUSTER)
    with bare_server(root / "bare") as anchor:
        fill(anchor, keys, pool)
        fill(node, keys, pool)
        if node.dbsize() != keys or anchor.dbsize() != keys:
            raise RuntimeError(f"filled: ours {node.dbsize()} keys, anchor {anchor.dbsize()}, expected {keys}")
        assert svc.server.proc is not None
        watch = CpuWatch(svc.server.proc.pid, anchor.proc.pid)
        anchor_s: list[float] = []
        ours_s: list[float] = []
        names: list[str] = []

        def ours_turn(turn: int) -> None:
            name = f"bench-snap-{turn}"
            t0 = time.perf_counter()
            svc.client.create_snapshot(CacheClusterId=CLUSTER, SnapshotName=name)
            svc.await_snapshot(name)
            ours_s.append(time.perf_counter() - t0)
            names.append(name)
            svc.await_cluster(CLUSTER, "available")  # no longer `snapshotting` (untimed)
            wait_until("the node's save child gone", lambda: _no_save_child(node), WAIT_TIMEOUT, POLL)

        for turn in range(TURNS):
            log(f"snapshots: save, turn {turn + 1}/{TURNS}")
            if turn % 2:  # who goes first alternates: neither side always meets a warmer machine
                ours_turn(turn)
            anchor_s.append(bgsave(anchor))
            if not turn % 2:
                ours_turn(turn)
        cpu = watch.summary()
        anchor_size = (anchor.dir / "dump.rdb").stat().st_size
        (anchor.dir / "dump.rdb").unlink()
    size = svc.snapshot_file(names[0]).stat().st_size
    for name in names[1:]:
        svc.delete_snapshot(name)
    table = Table(f"(a) snapshot of {size / MB:,.0f} MB: ours = CreateSnapshot -> DescribeSnapshots `available` "
                  f"({NODE_TYPE} cluster); anchor = BGSAVE of the same data on a bare redis-server", "bare BGSAVE")
    table.add(Row("speed (median)", size / MB / median(ours_s), anchor_size / MB / median(anchor_s), "MB/s",
                  target=ratio_at_least(0.9)))
    table.add(Row("time (median)", median(ours_s), median(anchor_s), "s"))
    table.notes.append(f"turns: ours {_turns(ours_s)} s; anchor {_turns(anchor_s)} s; RDB sizes ours {size:,}, "
                       f"anchor {anchor_size:,} bytes; both polled every {POLL * 1e3:g} ms")
    table.notes.append(cpu)
    return table, names[0], ours_s


# ---- (b) restore ------------------------------------------------------------------------------


def _link(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        import shutil

        shutil.copyfile(source, target)


def bare_load(root: Path, rdb: Path) -> float:
    directory = root / "load"
    directory.mkdir(exist_ok=True)
    _link(rdb, directory / "dump.rdb")
    t0 = time.perf_counter()
    server = Bare(directory)
    try:
        wait_until("bare redis-server loaded", server.answers, WAIT_TIMEOUT, POLL)
        return time.perf_counter() - t0
    finally:
        server.stop()
        (directory / "dump.rdb").unlink(missing_ok=True)


def part_b(root: Path, svc: Service, snapshot: str, keys: int) -> Table:
    rdb = svc.snapshot_file(snapshot)
    anchor_s: list[float] = []
    ours_s: list[float] = []
    assert svc.server.proc is not None
    watch = CpuWatch(svc.server.proc.pid)

    def ours_turn(turn: int) -> None:
        cluster_id = f"bench-restore-{turn}"
        t0 = time.perf_counter()
        svc.create_cluster(cluster_id, snapshot)
        svc.await_cluster(cluster_id, "available")
        ours_s.append(time.perf_counter() - t0)
        node = svc.node(cluster_id)
        for pause in (0.0, RECHECK):  # then again: nothing restarted it empty meanwhile
            time.sleep(pause)
            try:
                got: int | str = node.dbsize()
            except (OSError, RespError) as exc:
                got = repr(exc)
            if got != keys:
                log(svc.logs(cluster_id))
                raise RuntimeError(f"{cluster_id} `available`, {pause:g} s later: DBSIZE {got}, expected {keys:,}")
        svc.delete_cluster(cluster_id)

    for turn in range(TURNS):
        log(f"snapshots: restore, turn {turn + 1}/{TURNS}")
        if turn % 2:
            ours_turn(turn)
        anchor_s.append(bare_load(root, rdb))
        if not turn % 2:
            ours_turn(turn)
    size = rdb.stat().st_size / MB
    table = Table(f"(b) restore {size:,.0f} MB: ours = CreateCacheCluster SnapshotName= -> DescribeCacheClusters "
                  "`available`; anchor = bare redis-server on the snapshot's file as dump.rdb, until PONG",
                  "bare load")
    table.add(Row("load speed (median)", size / median(ours_s), size / median(anchor_s), "MB/s",
                  target=ratio_at_least(0.9)))
    table.add(Row("to serving (median)", median(ours_s), median(anchor_s), "s"))
    table.notes.append(f"turns: ours {_turns(ours_s)} s; anchor {_turns(anchor_s)} s; every restored cluster "
                       f"held all {keys:,} keys (DBSIZE, at once and {RECHECK:g} s later), and was deleted before the "
                       "next turn")
    table.notes.append(watch.summary())
    return table


# ---- (c) a writer during a group's snapshot ---------------------------------------------------


def part_c(svc: Service, snapshot: str, keys: int, pause: float) -> Table:
    log(f"snapshots: replication group {GROUP} (primary + 1 replica) restored from {snapshot}")
    svc.client.create_replication_group(
        ReplicationGroupId=GROUP, ReplicationGroupDescription="bench snapshots", Engine="redis",
        CacheNodeType=NODE_TYPE, NumCacheClusters=2, SnapshotName=snapshot)
    svc.await_group(GROUP)
    group = svc.group(GROUP)
    node_group = group["NodeGroups"][0]
    primary = node_group["PrimaryEndpoint"]
    replica_member = next(m for m in node_group["NodeGroupMembers"] if m["CurrentRole"] == "replica")
    replica = svc.node(replica_member["CacheClusterId"])

    def synced() -> bool:
        try:
            return replica.info("replication").get("master_link_status") == "up" and replica.dbsize() == keys
        except RespError:  # LOADING
            return False

    wait_until("the replica in sync", synced, WAIT_TIMEOUT, 0.1)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, primary["Address"], str(primary["Port"])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    windows: dict[str, list[tuple[float, float]]] = {"snapshot": [], "bgsave": [], "none": []}
    savers: list[str] = []

    def window(kind: str, action: Callable[[], object]) -> None:
        t0 = time.monotonic()
        try:
            action()
        finally:
            windows[kind].append((t0, time.monotonic()))

    def snapshot_window(turn: int) -> None:
        name = f"bench-rg-{turn}"

        def take() -> None:
            svc.client.create_snapshot(ReplicationGroupId=GROUP, SnapshotName=name)
            svc.await_snapshot(name)

        window("snapshot", take)
        snap = svc.client.describe_snapshots(SnapshotName=name)["Snapshots"][0]
        savers.append(snap["NodeSnapshots"][0]["CacheClusterId"])
        svc.delete_snapshot(name)

    def settle() -> None:  # between windows: the group `available` again, no save child left
        svc.await_group(GROUP)
        wait_until("the replica's save child gone", lambda: _no_save_child(replica), WAIT_TIMEOUT, POLL)

    assert svc.server.proc is not None
    watch = CpuWatch(svc.server.proc.pid, writer.pid)
    try:
        time.sleep(0.5)  # the writer's warm-up, in no window
        for turn in range(TURNS):
            log(f"snapshots: writer latency, turn {turn + 1}/{TURNS}: "
                + ("snapshot, then none" if turn % 2 else "none, then snapshot"))
            if turn % 2:
                snapshot_window(turn)
                settle()
            # as long as the last snapshot window (the first: as long as (a)'s save), at most NONE_MAX
            last = windows["snapshot"][-1][1] - windows["snapshot"][-1][0] if windows["snapshot"] else pause
            length = min(NONE_MAX, last)
            window("none", functools.partial(time.sleep, length))
            if not turn % 2:
                snapshot_window(turn)
                settle()
        log("snapshots: writer latency, a BGSAVE on the replica node (context)")
        window("bgsave", lambda: bgsave(replica))
        cpu = watch.summary()
        out, _ = writer.communicate(b"", timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    values = array("d")
    values.frombytes(out)
    samples = list(zip(values[0::2], values[1::2], strict=True))

    def within(kind: str) -> list[float]:
        return [lat * 1e3 for t, lat in samples if any(a <= t <= b for a, b in windows[kind])]

    ours, bg, none = within("snapshot"), within("bgsave"), within("none")
    table = Table("(c) writer through the primary endpoint (SET, 1 connection): ours = while CreateSnapshot "
                  "(ReplicationGroupId) runs until `available`; anchor = no snapshot", "no snapshot")
    table.add(Row("p99", percentile(ours, 99), percentile(none, 99), "ms", target=ratio_at_most(1.5)))
    table.add(Row("p50", percentile(ours, 50), percentile(none, 50), "ms"))
    table.add(Row("max", max(ours, default=math.nan), max(none, default=math.nan), "ms"))
    table.add(Row("p99 during a BGSAVE on the replica node (context)", percentile(bg, 99), percentile(none, 99),
                  "ms"))

    def spans(kind: str) -> str:
        return ", ".join(f"{b - a:.1f}" for a, b in windows[kind])

    table.notes.append(f"samples: {len(ours):,} during snapshots ({spans('snapshot')} s), {len(none):,} with none "
                       f"({spans('none')} s), {len(bg):,} during the BGSAVE ({spans('bgsave')} s); "
                       f"the order of the windows alternates by turn")
    table.notes.append(f"the snapshots were saved from {', '.join(savers)} (the replica: "
                       f"{replica_member['CacheClusterId']}); the group holds the {keys:,} keys of (a)")
    table.notes.append(cpu)
    return table


def run(lab: Lab) -> list[Table]:
    keys = 100_000 if lab.quick else 1_000_000  # 100 MB / 1 GB of values
    pool = os.urandom(MB + KEY_BYTES)
    ours = lab.ours
    lab.reset()
    svc = Service(ours)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-snapshots-") as tmp:
            root = Path(tmp)
            save_table, snapshot, save_s = part_a(root, svc, keys, pool)
            restore_table = part_b(root, svc, snapshot, keys)
            log(f"snapshots: deleting {CLUSTER}")
            svc.delete_cluster(CLUSTER)
            latency_table = part_c(svc, snapshot, keys, max(1.0, median(save_s)))
            log(f"snapshots: deleting {GROUP} and {snapshot}")
            svc.delete_group(GROUP)
            svc.delete_snapshot(snapshot)
    finally:
        svc.close()
        lab.reset()
    save_table.notes.append("engine-level rows (engine.save_rdb, a node started with seed=) are gone: the service "
                            "runs exactly those, so its rows above include them plus the API and the control loop")
    return [save_table, restore_table, latency_table]
