"""Automatic failover of a replication group (issue 5): client-visible outage, lost writes, and
what the floating primary endpoint costs, each beside its anchor measured in the same run.

(1) Outage: a writer SETs in a tight loop on one connection (socket timeouts 0.2 s, reconnect
on error, redis-py's own retries off); the outage is fault -> the first acknowledged write after
the first failed one. Ours writes to the group's primary endpoint address. The anchor is Redis
Sentinel as it is usually deployed by hand: 3 redis-servers (1 primary, 2 replicas, each on its
own loopback address, the same node settings as ours), ONE sentinel (quorum 1, like our one
observer) with down-after-milliseconds = our down_after, and a redis-py client that finds the
primary through Sentinel (`Sentinel(...).master_for(...)`). Faults: kill -9 of the primary
process, and SIGSTOP of it (resumed afterwards). Between trials both sides are back to 3 nodes
replicating: ours by itself; for Sentinel the benchmark acts as the supervisor (restarts a
killed node, resumes a frozen one, points it at the new primary).
(2) Lost writes: every acknowledged key is read back through the primary endpoint after the
failover; missing ones are counted, beside the replication offsets that explain them.
(3) Endpoint overhead: redis-benchmark through the primary endpoint address vs straight to the
primary node's own address, and through the fallback's L4 proxies (where an address cannot move):
HAProxy, re-pointed through its runtime API, and the built-in asyncio TCP forwarder.

This benchmark runs its own elasticache-local (log level INFO for the failover timeline, its own
loopback networks) rather than the Lab's shared one; everything it starts is stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from bench.lab import CpuWatch, Lab, Ours, log
from bench.report import Row, Table, Target, fmt, median

T = TypeVar("T")

# Our own networks (the Lab's server uses 127.0.130/131), so both can run at once.
NODE_NETWORK = "127.0.150.0/24"
ENDPOINT_NETWORK = "127.0.151.0/24"
SENTINEL_NODES = ("127.0.152.1", "127.0.152.2", "127.0.152.3")
SENTINEL_HOST = "127.0.152.10"
SENTINEL_PORT = 26379
FORWARDER_HOST = "127.0.152.20"
REDIS_PORT = 6379
MASTER_NAME = "mymaster"
GROUP_ID = "bench-failover"

DOWN_AFTER = 1.0  # ours (ELASTICACHE_LOCAL_DOWN_AFTER) and Sentinel's down-after-milliseconds
HEALTH_INTERVAL = 0.2  # ours; Sentinel pings every min(down-after, 1 s)
FAILOVER_TIMEOUT_MS = 3000
SOCKET_TIMEOUT = 0.2
RETRY_PAUSE = 0.002  # after a failed write, so a refused connect does not spin a core
WARMUP = 0.5  # writes acknowledged before the fault
AFTER = 0.2  # writes after the recovery (read back too)
RECOVER_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
WRITER_LIMIT = 90.0  # a writer thread never runs longer than this
BENCH_TIMEOUT = 300.0  # one redis-benchmark run
VALUE = "v" * 32
# The node settings ours writes (engine/adapters/redis.py), so both sides run the same redis.
NODE_SETTINGS = [
    "protected-mode no", "maxmemory 512mb", "maxmemory-policy volatile-lru", "repl-diskless-sync-delay 0",
    "appendonly no", "save 3600 1", "save 300 100", "save 60 10000", "daemonize no",
]
REDIS = "redis-server"
REDIS_BENCHMARK = "redis-benchmark"


def _ratio_at_most(limit: float) -> Target:
    return Target(f"<= {limit:g}x", "ratio", "<=", limit)


def _none_lost() -> Target:
    return Target("ours: none lost", "ours", "<=", 0)


# ---- small helpers ----------------------------------------------------------------------------


def poll(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Call fn until it returns something other than None; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(interval)


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def direct(host: str, port: int = REDIS_PORT, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis(host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=_no_retry())


def info(host: str, port: int = REDIS_PORT, section: str = "replication") -> dict[str, Any] | None:
    """INFO of one node, or None if it does not answer."""
    client = direct(host, port)
    try:
        return dict(client.info(section))
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _online_replicas(i: dict[str, Any]) -> list[str]:
    """Addresses of the replicas a primary's INFO replication shows as online."""
    out = []
    for key, value in i.items():
        if re.fullmatch(r"slave\d+", key) and isinstance(value, dict) and value.get("state") == "online":
            out.append(str(value.get("ip")))
    return out


def replicating(primary: str, replicas: list[str]) -> bool:
    """The primary is a master with exactly these replicas online, and each has its link up."""
    p = info(primary)
    if p is None or p.get("role") != "master" or sorted(_online_replicas(p)) != sorted(replicas):
        return False
    for host in replicas:
        r = info(host)
        if r is None or r.get("role") != "slave" or r.get("master_host") != primary \
                or r.get("master_link_status") != "up":
            return False
    return True


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/pid/stat): tells a pid from a reused one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _resume(pid: int, started: str | None) -> None:
    """SIGCONT a process we stopped, if it is still that process."""
    if started is not None and _start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _address_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As redis-server binds: connections of an earlier run in TIME_WAIT do not count, a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _set_bytes(key: str) -> int:
    """Bytes one SET adds to the replication stream (the offset counts these)."""
    return len(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(VALUE)}\r\n{VALUE}\r\n".encode())


# ---- the writer -------------------------------------------------------------------------------


class Writer(threading.Thread):
    """SET in a tight loop on one connection; every acknowledged key recorded; after a failed
    write the connection is dropped and the next SET reconnects (with a 2 ms pause)."""

    def __init__(self, make_client: Callable[[], redis.Redis], prefix: str) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self._make_client = make_client
        self.prefix = prefix
        self.acked: list[int] = []
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.fault_at: float | None = None  # perf_counter() of the fault, set by the benchmark
        self.outage: float | None = None  # fault -> first ack after the first failure after it
        self.recovered = threading.Event()
        self.halt = threading.Event()
        self.first_ack = threading.Event()
        self.started_at = 0.0

    def key(self, seq: int) -> str:
        return f"{self.prefix}{seq:09d}"

    def run(self) -> None:
        client = self._make_client()
        seq = 0
        failing_since: float | None = None
        self.started_at = time.perf_counter()
        deadline = self.started_at + WRITER_LIMIT
        try:
            while not self.halt.is_set() and time.perf_counter() < deadline:
                try:
                    client.set(self.key(seq), VALUE)
                except (redis.RedisError, OSError) as exc:
                    now = time.perf_counter()
                    self.errors += 1
                    kind = type(exc).__name__
                    self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
                    if failing_since is None:
                        failing_since = now
                    seq += 1  # it may have been applied: never reuse a key
                    with contextlib.suppress(redis.RedisError, OSError):
                        client.connection_pool.disconnect()
                    time.sleep(RETRY_PAUSE)
                    continue
                now = time.perf_counter()
                self.acked.append(seq)
                self.first_ack.set()
                seq += 1
                if failing_since is not None:
                    fault = self.fault_at
                    if fault is not None and failing_since >= fault and self.outage is None:
                        self.outage = now - fault
                        self.recovered.set()
                    failing_since = None
        finally:
            client.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def read_back(client: redis.Redis, writer: Writer) -> list[int]:
    """The acknowledged seqs whose key is not there."""
    missing: list[int] = []
    acked = writer.acked
    for i in range(0, len(acked), 1000):
        chunk = acked[i:i + 1000]
        values = client.mget([writer.key(s) for s in chunk])
        missing += [s for s, v in zip(chunk, values, strict=True) if v is None]
    return missing


# ---- results ----------------------------------------------------------------------------------


@dataclass
class Trial:
    fault: str  # "kill" or "stop"
    outage: float | None = None  # seconds; None: no recovery within RECOVER_TIMEOUT
    acked: int = 0
    missing: list[int] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    offset_before: int | None = None  # primary's master_repl_offset sampled just before the fault
    acked_after_sample: int = 0  # writes acknowledged between that sample and the fault
    promoted_offset: int | None = None  # the new primary's offset when it was promoted
    set_bytes: int = 0
    timeline: dict[str, float] = field(default_factory=dict)  # phase -> seconds after the fault
    ready_after: float | None = None  # fault -> back to 3 nodes replicating

    @property
    def killed_offset(self) -> int | None:
        if self.offset_before is None:
            return None
        return self.offset_before + self.acked_after_sample * self.set_bytes

    def loss_note(self) -> str:
        seqs = self.missing
        text = (f"{len(seqs)} of {self.acked} acknowledged writes missing (seq {seqs[0]}..{seqs[-1]})" if seqs
                else f"none of {self.acked} acknowledged writes missing")
        if self.killed_offset is not None and self.promoted_offset is not None:
            gap = self.killed_offset - self.promoted_offset
            text += (f"; replication offsets: killed primary >= {self.killed_offset:,} (sampled "
                     f"{self.offset_before:,} just before the kill + {self.acked_after_sample} SETs acknowledged "
                     f"since x {self.set_bytes} B), promoted replica {self.promoted_offset:,} at promotion")
            if gap > 0:
                text += f": {gap:,} B = ~{gap / self.set_bytes:.0f} SETs never reached it"
            else:
                text += " (not behind the killed primary: the replica had every acknowledged write)"
        return text


@dataclass
class Side:
    name: str
    trials: list[Trial] = field(default_factory=list)

    def of(self, fault: str) -> list[Trial]:
        return [t for t in self.trials if t.fault == fault]

    def outages(self, fault: str) -> list[float]:
        return [t.outage for t in self.of(fault) if t.outage is not None]

    def phase(self, fault: str, name: str) -> float:
        values = [t.timeline[name] for t in self.of(fault) if name in t.timeline]
        return median(values) * 1e3 if values else math.nan


class Fault:
    def __init__(self, kind: str, pid: int) -> None:
        self.kind = kind
        self.pid = pid
        self.started = _start_time(pid)
        self.wall = 0.0

    def inject(self, writer: Writer) -> None:
        writer.fault_at = time.perf_counter()
        self.wall = time.time()
        os.kill(self.pid, signal.SIGKILL if self.kind == "kill" else signal.SIGSTOP)

    def resume(self) -> None:
        if self.kind == "stop":
            _resume(self.pid, self.started)


def _run_writer(writer: Writer) -> None:
    writer.start()
    if not writer.first_ack.wait(10):
        writer.stop()
        raise RuntimeError(f"the writer got no write acknowledged in 10 s ({writer.error_kinds})")
    time.sleep(WARMUP)


def _finish_writer(writer: Writer, trial: Trial) -> None:
    if writer.recovered.wait(RECOVER_TIMEOUT):
        time.sleep(AFTER)
    writer.stop()
    trial.outage = writer.outage
    trial.acked = len(writer.acked)
    trial.errors = writer.errors
    trial.error_kinds = dict(writer.error_kinds)


def _sample_offset(host: str, writer: Writer, trial: Trial, key: str) -> int:
    """The primary's replication offset now, and how many writes were acknowledged so far."""
    i = info(host)
    trial.offset_before = int(i["master_repl_offset"]) if i else None
    trial.set_bytes = _set_bytes(key)
    return len(writer.acked)


def _promoted_offset(host: str) -> int | None:
    i = info(host)
    if not i or "second_repl_offset" not in i:
        return None
    value = int(i["second_repl_offset"])
    return value - 1 if value > 0 else None


# ---- log timelines ----------------------------------------------------------------------------

_OURS_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
_SENTINEL_LINE = re.compile(r"^\d+:X (\d+ \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3}) . (.*)$")


class LogTail:
    """New lines of a log file since the last mark, with their timestamps."""

    def __init__(self, path: Path, pattern: re.Pattern[str], stamp: str) -> None:
        self.path, self._pattern, self._stamp = path, pattern, stamp
        self._offset = 0

    def mark(self) -> None:
        self._offset = self.path.stat().st_size if self.path.exists() else 0

    def lines(self) -> Iterator[tuple[float, str]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read().decode(errors="replace")
        for line in data.splitlines():
            m = self._pattern.match(line)
            if m:
                stamp = m.group(1).replace(",", ".")
                yield dt.datetime.strptime(stamp, self._stamp).timestamp(), m.group(2)


def _first(lines: list[tuple[float, str]], needle: str, since: float) -> float | None:
    return next((t - since for t, text in lines if needle in text and t >= since - 0.002), None)


PHASE_ROWS = ("detected", "promotion seen", "endpoint moved")  # phases both sides have, shown as rows
OURS_PHASES = [  # (phase, log text that marks its end)
    ("detected", "is down; failing over"),
    ("fenced", "failover step select"),
    ("replica selected", "failover step promote"),
    ("REPLICAOF NO ONE sent", "failover step wait_promotion"),
    ("promotion seen", "failover step repoint"),
    ("endpoint moved", "failover step reconfigure"),
    ("replicas re-pointed", "failover step replace"),
    ("old node back", "Finished recovery for cache nodes"),
]
SENTINEL_PHASES = [
    ("detected", "+sdown master"),
    ("failover started", "+try-failover"),
    ("replica selected", "+selected-slave"),
    ("REPLICAOF NO ONE sent", "+failover-state-wait-promotion"),
    ("promotion seen", "+promoted-slave"),
    # From here GET-MASTER-ADDR-BY-NAME answers the promoted replica, but the master's flags stay
    # s_down/o_down until +switch-master, and redis-py's master_for trusts the answer only then.
    ("get-master-addr answers it", "+failover-state-reconf-slaves"),
    ("endpoint moved", "+switch-master"),
]


def timeline(tail: LogTail, phases: list[tuple[str, str]], since: float) -> dict[str, float]:
    lines = list(tail.lines())
    out = {}
    for name, needle in phases:
        t = _first(lines, needle, since)
        if t is not None:
            out[name] = t
    return out


# ---- ours -------------------------------------------------------------------------------------


class FailoverServer(Ours):
    """elasticache-local as the Lab starts it, but on networks of its own, at log level INFO (the
    failover steps), with down_after and health_interval spelled out."""

    name = "elasticache-local-failover"
    networks = (NODE_NETWORK, ENDPOINT_NETWORK)
    log_level = "info"

    def settings(self) -> dict[str, str]:
        return {"ELASTICACHE_LOCAL_DOWN_AFTER": str(DOWN_AFTER),
                "ELASTICACHE_LOCAL_HEALTH_INTERVAL": str(HEALTH_INTERVAL)}

    @property
    def log_path(self) -> Path:
        return self._log_path


@dataclass(frozen=True)
class Topology:
    endpoint: str  # the address clients write to (ours: the primary endpoint)
    primary: str  # the primary node's own address
    replicas: tuple[str, ...]
    pid: int  # the primary's redis-server


class OursGroup:
    def __init__(self, server: FailoverServer) -> None:
        self.server = server
        self.client = server.client()
        self.nodes_dir = server.dir / "data" / "nodes"

    def create(self) -> Topology:
        t0 = time.perf_counter()
        self.client.create_replication_group(
            ReplicationGroupId=GROUP_ID, ReplicationGroupDescription="failover benchmark", Engine="redis",
            CacheNodeType="cache.t3.micro", NumCacheClusters=3, AutomaticFailoverEnabled=True)
        self.client.get_waiter("replication_group_available").wait(
            ReplicationGroupId=GROUP_ID, WaiterConfig={"Delay": 0.1, "MaxAttempts": int(READY_TIMEOUT / 0.1)})
        topo = self.ready()
        log(f"ours: replication group available and replicating {time.perf_counter() - t0:.2f} s after create")
        return topo

    def _pid(self, host: str) -> int | None:
        for node_file in self.nodes_dir.glob("*/node.json"):
            try:
                config = json.loads(node_file.read_text())["config"]
                if config["host"] != host:
                    continue
                pid = int((node_file.parent / "node.pid").read_text().strip())
            except (OSError, ValueError, KeyError):
                continue
            if _start_time(pid) is not None:
                return pid
        return None

    def topology(self) -> Topology | None:
        """The group's topology if it is `available` with 3 members replicating."""
        groups = self.client.describe_replication_groups(ReplicationGroupId=GROUP_ID)["ReplicationGroups"]
        if not groups or groups[0]["Status"] != "available":
            return None
        group = groups[0]["NodeGroups"][0]
        members = group["NodeGroupMembers"]
        primaries = [m["ReadEndpoint"]["Address"] for m in members if m.get("CurrentRole") == "primary"]
        replicas = tuple(m["ReadEndpoint"]["Address"] for m in members if m.get("CurrentRole") == "replica")
        if len(members) != 3 or len(primaries) != 1 or len(replicas) != 2:
            return None
        endpoint, primary = group["PrimaryEndpoint"]["Address"], primaries[0]
        if not replicating(primary, list(replicas)):
            return None
        # The endpoint address must be on the primary itself.
        at_endpoint, at_node = info(endpoint, section="server"), info(primary, section="server")
        if not at_endpoint or not at_node or at_endpoint.get("run_id") != at_node.get("run_id"):
            return None
        pid = self._pid(primary)
        if pid is None:
            return None
        return Topology(endpoint, primary, replicas, pid)

    def ready(self) -> Topology:
        return poll("ours: group available with 3 nodes replicating", self.topology, READY_TIMEOUT)

    def delete(self) -> None:
        with contextlib.suppress(Exception):
            self.client.delete_replication_group(ReplicationGroupId=GROUP_ID)


def _fault_under_writer(fault_kind: str, topo: Topology, writer: Writer, trial: Trial, tail: LogTail) -> Fault:
    """Inject the fault into the primary while `writer` writes, until the writer has recovered
    (or given up); the primary is resumed afterwards whatever happened. Both sides run this."""
    fault = Fault(fault_kind, topo.pid)
    tail.mark()
    _run_writer(writer)
    try:
        before = _sample_offset(topo.primary, writer, trial, writer.key(0))
        fault.inject(writer)
        trial.acked_after_sample = len(writer.acked) - before
        _finish_writer(writer, trial)
    finally:
        writer.stop()
        fault.resume()
    return fault


def ours_trial(group: OursGroup, tail: LogTail, fault_kind: str, n: int) -> Trial:
    topo = group.ready()
    trial = Trial(fault_kind)
    writer = Writer(lambda: direct(topo.endpoint, timeout=SOCKET_TIMEOUT), f"fo:o{fault_kind[0]}:{n:02d}:")
    # Ours fences (kills) a frozen primary: the resume is for a failover that did not happen.
    fault = _fault_under_writer(fault_kind, topo, writer, trial, tail)
    after = group.ready()
    trial.ready_after = time.time() - fault.wall
    trial.promoted_offset = _promoted_offset(after.primary)
    reader = direct(after.endpoint, timeout=5.0)
    try:
        trial.missing = read_back(reader, writer)
    finally:
        reader.close()
    trial.timeline = timeline(tail, OURS_PHASES, fault.wall)
    return trial


# ---- the anchor: Redis Sentinel ---------------------------------------------------------------


class SentinelSetup:
    """Three redis-servers and one sentinel, each on its own loopback address, in a temp dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-sentinel-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # address -> process
        self.sentinel: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "sentinel.log"

    def start(self) -> None:
        for host, port in [*((h, REDIS_PORT) for h in SENTINEL_NODES), (SENTINEL_HOST, SENTINEL_PORT)]:
            if not _address_free(host, port):
                raise RuntimeError(f"{host}:{port} is taken; the Sentinel anchor needs it")
        first = SENTINEL_NODES[0]
        for host in SENTINEL_NODES:
            self.start_node(host, None if host == first else first)
        poll("sentinel set-up: replicas in sync", lambda: replicating(first, list(SENTINEL_NODES[1:])) or None,
             READY_TIMEOUT, 0.02)
        conf = self.dir / "sentinel.conf"
        conf.write_text("\n".join([
            f"bind {SENTINEL_HOST}", f"port {SENTINEL_PORT}", "daemonize no", "protected-mode no",
            f"dir {self.dir}", f"logfile {self.log_path}",
            f"sentinel monitor {MASTER_NAME} {first} {REDIS_PORT} 1",
            f"sentinel down-after-milliseconds {MASTER_NAME} {int(DOWN_AFTER * 1000)}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 2",
        ]) + "\n")
        self.sentinel = subprocess.Popen([REDIS, str(conf), "--sentinel"], cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)

    def start_node(self, host: str, replicaof: str | None) -> None:
        node_dir = self.dir / host
        node_dir.mkdir(exist_ok=True)
        lines = [f"bind {host}", f"port {REDIS_PORT}", f"dir {node_dir}", f"logfile {node_dir / 'node.log'}",
                 f"replica-announce-ip {host}", *NODE_SETTINGS]
        if replicaof:
            lines.append(f"replicaof {replicaof} {REDIS_PORT}")
        conf = node_dir / "node.conf"
        conf.write_text("\n".join(lines) + "\n")
        (node_dir / "dump.rdb").unlink(missing_ok=True)  # a restarted node starts empty, as ours does
        self.procs[host] = subprocess.Popen([REDIS, str(conf)], cwd=node_dir, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)

    def sentinel_client(self) -> redis.Redis:
        return direct(SENTINEL_HOST, SENTINEL_PORT)

    def master(self) -> str | None:
        client = self.sentinel_client()
        try:
            addr = _command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        except (redis.RedisError, OSError):
            return None
        finally:
            client.close()
        return addr[0].decode() if addr else None

    def _sentinel_sees(self, master: str, replicas: list[str]) -> bool:
        """Sentinel knows the master as healthy and both replicas as healthy replicas of it."""
        client = self.sentinel_client()
        try:
            state = _command(client, "SENTINEL", "MASTER", MASTER_NAME)
            known = _command(client, "SENTINEL", "REPLICAS", MASTER_NAME)
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

        def as_dict(flat: Any) -> dict[str, str]:
            if isinstance(flat, dict):
                return {_s(k): _s(v) for k, v in flat.items()}
            return {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}

        m = as_dict(state)
        if m.get("ip") != master or m.get("flags") != "master":
            return False
        healthy = {d.get("ip") for d in map(as_dict, known)
                   if d.get("flags") == "slave" and d.get("master-link-status") == "ok"}
        return set(replicas) <= healthy

    def topology(self) -> Topology | None:
        master = self.master()
        if master is None or master not in self.procs:
            return None
        replicas = [h for h in SENTINEL_NODES if h != master]
        if not replicating(master, replicas) or not self._sentinel_sees(master, replicas):
            return None
        proc = self.procs[master]
        if proc.poll() is not None:
            return None
        return Topology(master, master, tuple(replicas), proc.pid)

    def ready(self) -> Topology:
        return poll("sentinel: new master known, 3 nodes replicating", self.topology, READY_TIMEOUT)

    def rejoin(self, old: str, fault: Fault) -> None:
        """The supervisor's part: the old primary comes back as a replica of the new one."""
        new = poll("sentinel: a new master", lambda: m if (m := self.master()) not in (None, old) else None,
                   READY_TIMEOUT)
        if fault.kind == "kill":
            self.procs[old].wait(10)
            self.start_node(old, new)
        else:
            client = direct(old)
            try:
                poll(f"{old} answers after SIGCONT", lambda: _ping(client), 10.0, 0.02)
                _command(client, "REPLICAOF", new, str(REDIS_PORT))
            finally:
                client.close()

    def stop(self) -> None:
        procs = [*self.procs.values(), *([self.sentinel] if self.sentinel else [])]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()
        self.sentinel = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _command(client: redis.Redis, *args: str) -> Any:
    """A raw command (no response callback: SENTINEL replies stay flat lists)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ping(client: redis.Redis) -> bool | None:
    try:
        return bool(client.ping()) or None
    except (redis.RedisError, OSError):
        return None


def sentinel_trial(setup: SentinelSetup, tail: LogTail, fault_kind: str, n: int) -> Trial:
    topo = setup.ready()
    trial = Trial(fault_kind)
    sentinel = Sentinel([(SENTINEL_HOST, SENTINEL_PORT)], socket_timeout=SOCKET_TIMEOUT,  # type: ignore[no-untyped-call]
                        socket_connect_timeout=SOCKET_TIMEOUT)

    def client() -> redis.Redis:
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            MASTER_NAME, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, retry=_no_retry())
        return master

    writer = Writer(client, f"fo:s{fault_kind[0]}:{n:02d}:")
    # A frozen primary runs again after (the client has already moved on, or gave up).
    fault = _fault_under_writer(fault_kind, topo, writer, trial, tail)
    setup.rejoin(topo.primary, fault)
    after = setup.ready()
    trial.ready_after = time.time() - fault.wall
    trial.promoted_offset = _promoted_offset(after.primary)
    reader = client()
    try:
        trial.missing = read_back(reader, writer)
    finally:
        reader.close()
        for s in sentinel.sentinels:
            s.close()
    trial.timeline = timeline(tail, SENTINEL_PHASES, fault.wall)
    return trial


# ---- endpoint overhead ------------------------------------------------------------------------

_RPS = re.compile(r"(SET|GET): ([\d.]+) requests per second")


def redis_benchmark(host: str, port: int, pipeline: int, n: int) -> dict[str, float]:
    argv = [REDIS_BENCHMARK, "-h", host, "-p", str(port), "-t", "set,get", "-n", str(n), "-c", "50", "-q"]
    if pipeline > 1:
        argv += ["-P", str(pipeline)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BENCH_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = out.decode(errors="replace")
    found = {cmd: float(rps) for cmd, rps in _RPS.findall(text.replace("\r", "\n"))}
    if set(found) != {"SET", "GET"}:
        raise RuntimeError(f"redis-benchmark {' '.join(argv[1:])}: unexpected output {text[-500:]!r}")
    return found


@dataclass
class Throughput:
    runs: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)  # (via, pipeline, cmd)

    def add(self, via: str, pipeline: int, result: dict[str, float]) -> None:
        for cmd, rps in result.items():
            self.runs.setdefault((via, pipeline, cmd), []).append(rps)

    def get(self, via: str, pipeline: int, cmd: str) -> float:
        return median(self.runs.get((via, pipeline, cmd), []))


def endpoint_overhead(topo: Topology, reps: dict[int, int], n: int, server_pid: int) -> tuple[Throughput, str]:
    """redis-benchmark via the endpoint, direct, via HAProxy and via the built-in forwarder,
    `reps[pipeline]` times each, interleaved (a pipelined run of n requests takes a fraction of a
    second: it gets more reps)."""
    from engine.proxy.haproxy import HaproxyForwarders, find_haproxy
    from engine.proxy.hub import ProxyHub

    binary = find_haproxy()
    if binary is None:
        raise RuntimeError("haproxy is missing: apt-get install -y haproxy")
    hub = ProxyHub()
    workdir = Path(tempfile.mkdtemp(prefix="bench-haproxy-"))
    haproxy = ProxyHub(tcp=HaproxyForwarders(workdir, binary))
    hub.start()
    haproxy.start()
    try:
        hub.add_tcp_forwarder("bench-forwarder", FORWARDER_HOST, 0, (topo.primary, REDIS_PORT))
        fhost, fport = hub.address("bench-forwarder")
        haproxy.add_tcp_forwarder("bench-haproxy", FORWARDER_HOST, REDIS_PORT, (topo.primary, REDIS_PORT))
        targets = [("endpoint", topo.endpoint, REDIS_PORT), ("direct", topo.primary, REDIS_PORT),
                   ("haproxy", FORWARDER_HOST, REDIS_PORT), ("forwarder", fhost, fport)]
        out = Throughput()
        watch = CpuWatch(server_pid, topo.pid)
        for rep in range(max(reps.values())):
            turn = rep % len(targets)
            order = targets[turn:] + targets[:turn]  # rotate, so no side always runs first
            for pipeline in (p for p in (1, 16) if rep < reps[p]):
                for via, host, port in order:
                    log(f"redis-benchmark -P {pipeline} via {via} ({rep + 1}/{reps[pipeline]})")
                    out.add(via, pipeline, redis_benchmark(host, port, pipeline, n))
        return out, watch.summary()
    finally:
        haproxy.close()
        hub.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---- the benchmark ----------------------------------------------------------------------------


def _shielded(*steps: Callable[[], None]) -> None:
    """Run every clean-up step, with Ctrl-C and SIGTERM ignored meanwhile (each step has a deadline), so
    an impatient user does not leave nodes behind; the first error is raised afterwards."""
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    errors: list[BaseException] = []
    try:
        for step in steps:
            try:
                step()
            except BaseException as exc:  # the other steps run all the same
                errors.append(exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if errors:
        raise errors[0]


def _ms(value: float | None) -> float:
    return math.nan if value is None else value * 1e3


def _max(values: list[float]) -> float:
    return max(values) if values else math.nan


def _trials(label: str, side: Side, run_one: Callable[[str, int], Trial], n: int) -> None:
    for fault_kind in ("kill", "stop"):
        for i in range(n):
            trial = run_one(fault_kind, i)
            side.trials.append(trial)
            log(f"{label} {fault_kind} #{i + 1}: outage {fmt(_ms(trial.outage))} ms, {trial.acked} acked, "
                f"{len(trial.missing)} missing, back to 3 nodes after {fmt(trial.ready_after)} s")


def run(lab: Lab) -> list[Table]:
    n = 2 if lab.quick else 5
    reps = {1: 1, 16: 5} if lab.quick else {1: 5, 16: 9}
    requests = 200_000
    if shutil.which(REDIS_BENCHMARK) is None:
        raise RuntimeError("redis-benchmark is missing: apt-get install -y redis-tools")
    ours, anchor = Side("ours"), Side("sentinel")
    server = FailoverServer()
    setup = SentinelSetup()
    started = time.perf_counter()
    try:
        log("starting elasticache-local (INFO log, own networks) for the failover benchmark")
        server.start()
        assert server.proc is not None
        group = OursGroup(server)
        group.create()
        ours_tail = LogTail(server.log_path, _OURS_LINE, "%Y-%m-%d %H:%M:%S.%f")
        _trials("ours", ours, lambda kind, i: ours_trial(group, ours_tail, kind, i), n)

        log("starting the Sentinel anchor: 3 redis-servers and one sentinel")
        setup.start()
        setup.ready()
        sentinel_tail = LogTail(setup.log_path, _SENTINEL_LINE, "%d %b %Y %H:%M:%S.%f")
        _trials("sentinel", anchor, lambda kind, i: sentinel_trial(setup, sentinel_tail, kind, i), n)
        setup.stop()

        log("endpoint overhead: redis-benchmark")
        topo = group.ready()
        throughput, cpu = endpoint_overhead(topo, reps, requests, server.proc.pid)
        group.delete()
    finally:
        _shielded(setup.stop, server.stop)
    log(f"failover benchmark: {time.perf_counter() - started:.0f} s")
    return [outage_table(ours, anchor, n), loss_table(ours, anchor, n),
            overhead_table(throughput, cpu, reps, requests)]


def outage_table(ours: Side, anchor: Side, n: int) -> Table:
    table = Table(f"Client-visible outage: fault -> first acknowledged write through the primary endpoint "
                  f"(n={n} per fault; down_after {DOWN_AFTER:g} s on both)", "Redis Sentinel (1 sentinel)")
    for fault, label, limit in (("kill", "kill -9", 0.25), ("stop", "SIGSTOP", 0.6)):
        o, a = ours.outages(fault), anchor.outages(fault)
        table.add(Row(f"{label}: outage median", median(o) * 1e3, median(a) * 1e3, "ms",
                      target=_ratio_at_most(limit)))
        table.add(Row(f"{label}: outage max", _max(o) * 1e3, _max(a) * 1e3, "ms"))
        for phase in PHASE_ROWS:
            table.add(Row(f"{label}: fault -> {phase}, median", ours.phase(fault, phase),
                          anchor.phase(fault, phase), "ms"))
        failed = [side.name for side in (ours, anchor) for t in side.of(fault) if t.outage is None]
        if failed:
            table.notes.append(f"{label}: no recovery within {RECOVER_TIMEOUT:g} s in trials of: {', '.join(failed)}")
    for side in (ours, anchor):
        for fault, label in (("kill", "kill -9"), ("stop", "SIGSTOP")):
            outs = ", ".join(fmt(_ms(t.outage)) for t in side.of(fault))
            table.notes.append(f"{side.name} {label} outages (ms): {outs}")
    for side, phases in ((ours, OURS_PHASES), (anchor, SENTINEL_PHASES)):
        for fault, label in (("kill", "kill -9"), ("stop", "SIGSTOP")):
            for i, t in enumerate(side.of(fault)):
                steps = ", ".join(f"{name} +{t.timeline[name] * 1e3:.0f}" for name, _ in phases
                                  if name in t.timeline)
                table.notes.append(f"{side.name} {label} #{i + 1} timeline (ms after the fault, from its log): "
                                   f"{steps}; first write +{fmt(_ms(t.outage))}; errors "
                                   f"{json.dumps(t.error_kinds)}")
    for side in (ours, anchor):
        back = ", ".join(fmt(t.ready_after) for t in side.trials)
        table.notes.append(f"{side.name}: fault -> 3 nodes replicating again (s; kill trials, then SIGSTOP): {back}")
    table.notes.append("the medians carry the target; timelines come from log lines with millisecond stamps "
                       "(ours: 'failover step X' is logged when step X starts); 'endpoint moved' is, for ours, "
                       "the primary address bound on the new primary, for Sentinel +switch-master (redis-py's "
                       "master_for takes the new master from then on: before, the master's flags are still "
                       "s_down/o_down although GET-MASTER-ADDR-BY-NAME already answers the promoted replica)")
    table.notes.append("Sentinel itself (not the client) waits for INFO replies, sent every 1 s during a failover, "
                       "to see the promotion and the re-pointed replicas; for Sentinel the benchmark is the "
                       "supervisor that restarts a killed node / resumes a frozen one and points it at the new "
                       "master, ours does that by itself")
    return table


def loss_table(ours: Side, anchor: Side, n: int) -> Table:
    table = Table("Acknowledged writes lost in a failover (every acknowledged key read back through the primary "
                  "endpoint afterwards; writer at full speed)", "Redis Sentinel (1 sentinel)")
    for fault, label in (("kill", "kill -9"), ("stop", "SIGSTOP")):
        o, a = ours.of(fault), anchor.of(fault)
        for i in range(n):
            table.add(Row(f"{label} trial {i + 1}: lost", len(o[i].missing) if i < len(o) else None,
                          len(a[i].missing) if i < len(a) else None, "writes"))
        table.add(Row(f"{label}: lost, total", sum(len(t.missing) for t in o), sum(len(t.missing) for t in a),
                      "writes", target=_none_lost() if fault == "kill" else None))
        table.add(Row(f"{label}: acknowledged and checked, total", sum(t.acked for t in o),
                      sum(t.acked for t in a), "writes"))
    for side in (ours, anchor):
        for fault, label in (("kill", "kill -9"), ("stop", "SIGSTOP")):
            for i, t in enumerate(side.of(fault)):
                if fault == "kill" or t.missing:
                    table.notes.append(f"{side.name} {label} #{i + 1}: {t.loss_note()}")
    if any(t.missing for side in (ours, anchor) for t in side.trials):
        table.notes.append("redis replicates asynchronously: a write is acknowledged before the replicas have it, "
                           "so writes acknowledged in the last moment before a crash can be missing on the "
                           "promoted replica (as in ElastiCache and Sentinel)")
    return table


def overhead_table(t: Throughput, cpu: str, reps: dict[int, int], requests: int) -> Table:
    table = Table(f"Endpoint overhead: redis-benchmark -t set,get -n {requests} -c 50 -q (median of {reps[1]} "
                  f"runs, -P 16: of {reps[16]}; interleaved)", "direct to the primary node's own address")
    for pipeline in (1, 16):
        suffix = "" if pipeline == 1 else f" -P {pipeline}"
        for cmd in ("SET", "GET"):
            table.add(Row(f"{cmd}{suffix}: primary endpoint", t.get("endpoint", pipeline, cmd),
                          t.get("direct", pipeline, cmd), "req/s", target=Target(">= 0.95x", "ratio", ">=", 0.95)))
    for pipeline in (1, 16):
        suffix = "" if pipeline == 1 else f" -P {pipeline}"
        for cmd in ("SET", "GET"):
            table.add(Row(f"{cmd}{suffix}: HAProxy (fallback)", t.get("haproxy", pipeline, cmd),
                          t.get("direct", pipeline, cmd), "req/s"))
            table.add(Row(f"{cmd}{suffix}: built-in asyncio forwarder (fallback without HAProxy)",
                          t.get("forwarder", pipeline, cmd), t.get("direct", pipeline, cmd), "req/s"))
    table.notes.append("the primary endpoint is an extra bind address on the primary's own redis-server: endpoint "
                       "and direct rows measure the same process, so their difference is this machine's noise "
                       "(spreads below); the fallback rows run engine/proxy's HAProxy forwarder (one haproxy process, "
                       "as the service runs it) and its built-in TcpForwarder (ProxyHub, in the benchmark process)")
    for pipeline in (1, 16):
        spread = "; ".join(
            f"{via} {cmd} {fmt(min(t.runs[(via, pipeline, cmd)]))}..{fmt(max(t.runs[(via, pipeline, cmd)]))}"
            for via in ("endpoint", "direct", "haproxy", "forwarder") for cmd in ("SET", "GET")
            if t.runs.get((via, pipeline, cmd)))
        table.notes.append(f"-P {pipeline} spread (req/s, min..max): {spread}")
    table.notes.append(cpu)
    return table
