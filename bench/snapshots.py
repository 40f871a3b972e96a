"""Backups and restores of a large dataset, beside what redis-server does by itself.

(a) Save: 1 GB of data (1 KB values of random bytes: an RDB compresses nothing of them) on two
    identical bare redis-server processes (the second a copy by replication). Anchor: BGSAVE on one,
    until rdb_bgsave_in_progress:0 and LASTSAVE moved. Ours: engine.save_rdb from the other
    (the node streams its RDB as to a new replica; we write it to disk and fsync it).
(b) Restore: anchor, a bare redis-server started on that RDB as its dump.rdb until PING answers
    PONG (not LOADING); ours, a process-runtime node started with `seed=` that RDB until its
    probe answers.
(c) A writer's latency on a primary (SET of 100 bytes, one connection, in its own process)
    while save_rdb runs on the primary's replica, beside the same writer with no save: the two
    servers of (a), the second made a replica of the first again.
Sides are taken in turns, so a change in the machine's load meets both.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.lab import CpuWatch, Lab, free_port, log
from bench.report import Row, Table, Target, median, percentile, ratio_at_least
from engine import NodeConfig, RdbError, process_runtime, save_rdb
from engine.adapters.redis import RespError, execute, parse_info
from engine.versions import discover

REDIS = "redis-server"
TURNS = 2
KEY_BYTES = 1000
MB = 1 << 20

# The writer of (c): SETs on one connection until stdin closes, then (end time, latency) pairs.
_WRITER = r"""
import json, socket, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
s = socket.create_connection((host, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
value = b"v" * 100; out = []; i = 0
while not stop.is_set():
    key = b"w:%d" % (i % 10000); i += 1
    t0 = time.monotonic()
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value))
    reply = s.recv(64)
    t1 = time.monotonic()
    assert reply == b"+OK\r\n", reply
    out.append((t1, t1 - t0))
json.dump(out, sys.stdout)
"""


def ratio_at_most(limit: float) -> Target:
    return Target(f"<= {limit:g}x", "ratio", "<=", limit)


class Bare:
    """A bare redis-server on 127.0.0.1 with the settings our nodes have for saves."""

    def __init__(self, directory: Path, *extra: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
             "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
             "--enable-debug-command", "local", "--maxmemory", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def cmd(self, *args: str, timeout: float = 600.0) -> object:
        return execute("127.0.0.1", self.port, *args, timeout=timeout)

    def answers(self) -> bool:
        """PONG: up and done loading (a loading server answers -LOADING)."""
        try:
            return self.cmd("PING", timeout=1.0) == "PONG"
        except (OSError, RespError):
            if self.proc.poll() is not None:
                raise RuntimeError(f"bare redis-server on port {self.port} exited") from None
            return False

    def info(self, section: str) -> dict[str, str]:
        reply = self.cmd("INFO", section)
        return parse_info(reply if isinstance(reply, bytes | str) else b"")

    def stop(self) -> None:
        self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def _await(what: str, done: Callable[[], bool], timeout: float = 300.0, pause: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(pause)


@contextlib.contextmanager
def bare_servers(root: Path, n: int) -> Iterator[list[Bare]]:
    servers: list[Bare] = []
    try:
        for i in range(n):
            servers.append(Bare(root / f"bare{i}"))
        for server in servers:
            _await("bare redis-server up", server.answers, 10.0)
        yield servers
    finally:
        for server in servers:
            server.stop()


def bgsave(server: Bare) -> float:
    before = server.cmd("LASTSAVE")
    t0 = time.perf_counter()
    server.cmd("BGSAVE")

    def finished() -> bool:
        fields = server.info("persistence")
        return fields.get("rdb_bgsave_in_progress") == "0" and server.cmd("LASTSAVE") != before

    _await("BGSAVE", finished, pause=0.005)
    seconds = time.perf_counter() - t0
    if server.info("persistence").get("rdb_last_bgsave_status") != "ok":
        raise RuntimeError("BGSAVE failed")
    return seconds


def timed_save(server: Bare, dest: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    size = save_rdb("127.0.0.1", server.port, dest)
    return time.perf_counter() - t0, size


def fill(server: Bare, keys: int) -> None:
    """`keys` SETs of KEY_BYTES random bytes each, pipelined in batches over one connection."""
    pool = os.urandom(MB + KEY_BYTES)
    batch = 1000
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
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


def copy_by_replication(primary: Bare, replica: Bare) -> None:
    replica.cmd("REPLICAOF", "127.0.0.1", str(primary.port))
    _await("replica in sync", lambda: replica.info("replication").get("master_link_status") == "up", 300, 0.05)


def part_a(root: Path, anchor: Bare, ours: Bare, keys: int) -> tuple[Table, Path]:
    log(f"snapshots: {keys:,} keys of {KEY_BYTES} random bytes into a bare redis-server, and a copy")
    fill(anchor, keys)
    copy_by_replication(anchor, ours)
    ours.cmd("REPLICAOF", "NO", "ONE")
    dest = root / "ours.rdb"
    watch = CpuWatch(anchor.proc.pid, ours.proc.pid)
    anchor_s: list[float] = []
    ours_s: list[float] = []
    size = 0
    for turn in range(TURNS):
        log(f"snapshots: save, turn {turn + 1}/{TURNS}")
        if turn % 2:  # who goes first alternates: neither side always meets a warmer machine
            seconds, size = timed_save(ours, dest)
            ours_s.append(seconds)
        anchor_s.append(bgsave(anchor))
        if not turn % 2:
            seconds, size = timed_save(ours, dest)
            ours_s.append(seconds)
    cpu = watch.summary()
    anchor_size = (root / "bare0" / "dump.rdb").stat().st_size
    (root / "bare0" / "dump.rdb").unlink()
    table = Table(f"(a) save {size / MB:,.0f} MB: ours = save_rdb (streamed by the node, written + fsynced "
                  "here); anchor = BGSAVE of an identical server", "BGSAVE")
    table.add(Row("throughput (median)", size / MB / median(ours_s), anchor_size / MB / median(anchor_s), "MB/s",
                  target=ratio_at_least(0.9)))
    table.add(Row("time (median)", median(ours_s), median(anchor_s), "s"))
    table.notes.append(f"turns: ours {', '.join(f'{s:.2f}' for s in ours_s)} s; "
                       f"anchor {', '.join(f'{s:.2f}' for s in anchor_s)} s; file sizes ours {size:,} anchor "
                       f"{anchor_size:,} bytes")
    table.notes.append(cpu)
    return table, dest


def bare_load(root: Path, rdb: Path) -> float:
    directory = root / "load"
    directory.mkdir(exist_ok=True)
    target = directory / "dump.rdb"
    target.unlink(missing_ok=True)
    os.link(rdb, target)
    t0 = time.perf_counter()
    server = Bare(directory)
    try:
        _await("bare redis-server loaded", server.answers)
        return time.perf_counter() - t0
    finally:
        server.stop()


def seeded_load(root: Path, rdb: Path, version: str, turn: int) -> float:
    runtime = process_runtime(root / "nodes")
    name = f"seeded{turn}"
    config = NodeConfig(name=name, engine="redis", version=version, host="127.0.0.1", port=free_port(),
                        memory_mb=4096, seed=str(rdb))
    try:
        t0 = time.perf_counter()
        runtime.start(config)
        while not runtime.probe(name, 1.0).ok:  # as the control plane awaits a node
            if runtime.wait_ready(name, 1.0) and runtime.probe(name, 1.0).ok:
                break
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("the seeded node never answered")
        return time.perf_counter() - t0
    finally:
        runtime.remove(name)
        runtime.close()


def part_b(root: Path, rdb: Path) -> Table:
    version = discover()["redis"][0].version
    anchor_s: list[float] = []
    ours_s: list[float] = []
    watch = CpuWatch()
    for turn in range(TURNS):
        log(f"snapshots: restore, turn {turn + 1}/{TURNS}")
        if turn % 2:
            ours_s.append(seeded_load(root, rdb, version, turn))
        anchor_s.append(bare_load(root, rdb))
        if not turn % 2:
            ours_s.append(seeded_load(root, rdb, version, turn))
    size = rdb.stat().st_size / MB
    table = Table(f"(b) restore {size:,.0f} MB: ours = process-runtime node started with seed=, until its "
                  "probe answers; anchor = bare redis-server on it as dump.rdb, until PONG", "bare redis-server")
    table.add(Row("load speed (median)", size / median(ours_s), size / median(anchor_s), "MB/s",
                  target=ratio_at_least(0.9)))
    table.add(Row("start -> serving (median)", median(ours_s), median(anchor_s), "s"))
    table.notes.append(f"turns: ours {', '.join(f'{s:.2f}' for s in ours_s)} s; "
                       f"anchor {', '.join(f'{s:.2f}' for s in anchor_s)} s")
    table.notes.append(watch.summary())
    return table


def part_c(root: Path, primary: Bare, replica: Bare, pause: float) -> Table:
    """Windows in turn: no save, save_rdb, no save, BGSAVE on the replica (redis's own save, for
    context), no save."""
    log("snapshots: the copy becomes a replica again")
    copy_by_replication(primary, replica)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, "127.0.0.1", str(primary.port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    windows: dict[str, list[tuple[float, float]]] = {"save_rdb": [], "bgsave": [], "none": []}

    def window(kind: str, action: Callable[[], object]) -> None:
        t0 = time.monotonic()
        try:
            action()
        finally:
            windows[kind].append((t0, time.monotonic()))

    def no_child() -> bool:  # the node's fork child of the last save has been reaped
        return replica.info("persistence").get("rdb_bgsave_in_progress") == "0"

    try:
        time.sleep(0.5)  # the writer's warm-up, in no window
        for kind, action in (("save_rdb", lambda: save_rdb("127.0.0.1", replica.port, root / "replica.rdb")),
                             ("bgsave", lambda: bgsave(replica))):
            log(f"snapshots: writer latency, no save, then {kind} on the replica")
            window("none", lambda: time.sleep(pause))
            _await("the replica's save child gone", no_child)
            window(kind, action)
        window("none", lambda: time.sleep(pause))
        out, _ = writer.communicate("", timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    samples = [(float(t), float(lat)) for t, lat in json.loads(out)]

    def within(kind: str) -> list[float]:
        return [lat * 1e3 for t, lat in samples if any(a <= t <= b for a, b in windows[kind])]

    ours, bg, none = within("save_rdb"), within("bgsave"), within("none")
    table = Table("(c) writer on the primary (SET, 1 connection): ours = while save_rdb runs on its replica; "
                  "anchor = no save", "no save")
    table.add(Row("p99", percentile(ours, 99), percentile(none, 99), "ms", target=ratio_at_most(1.5)))
    table.add(Row("p50", percentile(ours, 50), percentile(none, 50), "ms"))
    table.add(Row("max", max(ours, default=math.nan), max(none, default=math.nan), "ms"))
    table.add(Row("p99 during a BGSAVE on the replica (context)", percentile(bg, 99), percentile(none, 99), "ms"))

    def spans(kind: str) -> str:
        return ", ".join(f"{b - a:.1f}" for a, b in windows[kind])

    table.notes.append(f"samples: {len(ours):,} during save_rdb ({spans('save_rdb')} s), {len(bg):,} during BGSAVE "
                       f"({spans('bgsave')} s), {len(none):,} with no save ({spans('none')} s)")
    return table


def run(lab: Lab) -> list[Table]:
    keys = 100_000 if lab.quick else 1_000_000  # 100 MB / 1 GB of values
    with tempfile.TemporaryDirectory(prefix="bench-snapshots-") as tmp:
        root = Path(tmp)
        try:
            with bare_servers(root, 2) as (first, second):
                save_table, rdb = part_a(root, first, second, keys)
                restore_table = part_b(root, rdb)
                rdb.unlink()
                latency_table = part_c(root, first, second, 2.0 if lab.quick else 5.0)
        except RdbError as exc:
            raise RuntimeError(f"a save failed: {exc}") from exc
    return [save_table, restore_table, latency_table]
