"""An in-memory NodeRuntime with fault injection, for fast deterministic tests of the control loop.

Nothing here touches sockets or processes. Exit listeners are called synchronously, in the
thread that caused the exit (crash/kill/stop/remove), after the runtime's lock is released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.adapters.redis import persistent
from engine.rdb import RdbError
from engine.runtime.base import (
    ExitListener,
    IamVerify,
    NodeConfig,
    NodeInfo,
    NodeState,
    NodeStats,
    ProbeResult,
    RuntimeError_,
    node_info,
    pause_for_probe,
    without_seed,
)
from engine.runtime.fake_cluster import FakeClusterCommands
from engine.runtime.fake_config import FakeConfigCommands
from engine.runtime.fake_rdb import CORRUPT, load_fake_seed, read_fake_rdb, write_fake_rdb
from engine.security import AclUser, check_security, link_works

__all__ = ["CORRUPT", "DEFAULT_VERSIONS", "FakeRuntime", "read_fake_rdb"]

DEFAULT_VERSIONS: Mapping[str, tuple[str, ...]] = {
    "redis": ("7.0.15", "6.2.14"),
    "valkey": ("8.1.8",),
    "memcached": ("1.6.18",),
}


@dataclass
class _FakeNode:
    config: NodeConfig
    state: NodeState
    pid: int | None
    role: str | None
    hung: bool = False
    probes_since_start: int = 0
    ready_after: int = 0
    ready_reported: bool = False  # wait_ready said so once for this start
    data: dict[str, str] = field(default_factory=dict)  # its keys, as set_data put them
    seed: str | None = None  # the seed it was last started with
    cpu_seconds: float = 0.0


EMPTY_REDIS_MEMORY = 1_000_000  # bytes an empty fake redis reports in use


class FakeRuntime(FakeClusterCommands, FakeConfigCommands):
    """NodeRuntime in memory. Every call is appended to `calls` as (method, node name)
    ("list_managed" with an empty name). Fault injection: crash, hang/unhang,
    fail_next_starts, set_ready_after, fail_saves; set_role makes a node a replica ("slave") or
    primary. Redis/valkey nodes hold data (set_data, data_of) as real ones would: kept across
    restarts only with appendonly yes, replaced by a seed (a file save_rdb wrote; a file that
    fails check_rdb or contains CORRUPT makes the node exit right after its start, as redis
    does), and seen by a replica as its primary's."""

    name = "fake"

    def __init__(self, available_versions: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._versions = dict(DEFAULT_VERSIONS if available_versions is None else available_versions)
        self._nodes: dict[str, _FakeNode] = {}
        self.iam_verify: IamVerify | None = None
        self._listener: ExitListener | None = None
        self._lock = threading.RLock()
        self._next_pid = 1000
        self._fail_starts = 0
        self._fail_temporary = True
        self._ready_after = 0
        self.calls: list[tuple[str, str]] = []
        # Replication as the nodes would report it: whose replica each node is, what it listens on.
        self.primary_of: dict[str, tuple[str, int] | None] = {}
        self.addresses: dict[str, list[str]] = {}
        self._offsets: dict[str, int] = {}
        self._marks: dict[str, int] = {}
        self._refuse_commands: set[str] = set()
        self._failing_saves: set[str] = set()
        self._stats: dict[str, dict[str, str]] = {}
        # Every apply_users, in order: (node, the users it got).
        self.applied_users: list[tuple[str, tuple[AclUser, ...]]] = []
        self._refuse_auth: set[str] = set()
        self.without_tls: set[str] = set()  # engines whose "binaries" have no TLS (tests)
        self._cluster = {}  # cluster-enabled nodes' nodes.conf state (fake_cluster.py)

    # --- the NodeRuntime protocol ---

    def available_versions(self) -> Mapping[str, tuple[str, ...]]:
        return dict(self._versions)

    def tls_modes(self, engine: str, version: str) -> tuple[str, ...]:
        return () if engine in self.without_tls else ("preferred", "required")

    def set_available_versions(self, versions: Mapping[str, tuple[str, ...]]) -> None:
        """What an install (or a removal) of engine binaries would change: running nodes keep
        running the version they were started with."""
        with self._lock:
            self._versions = dict(versions)

    def start(self, config: NodeConfig) -> NodeInfo:
        with self._lock:
            self.calls.append(("start", config.name))
            node = self._nodes.get(config.name)
            if node is not None and node.state is not NodeState.EXITED:
                return self._info(node)
            if self._fail_starts > 0:
                self._fail_starts -= 1
                raise RuntimeError_(f"injected start failure of {config.name}", temporary=self._fail_temporary)
            if config.version not in self._versions.get(config.engine, ()):
                raise RuntimeError_(
                    f"{config.engine} {config.version} is not available (have: "
                    f"{', '.join(self._versions.get(config.engine, ())) or 'none'})",
                    temporary=False,
                )
            self._next_pid += 1
            role = None if config.engine == "memcached" else ("slave" if config.settings.get("replicaof") else "master")
            if config.engine != "memcached":
                replicaof = config.settings.get("replicaof", "").split()
                self.primary_of[config.name] = (replicaof[0], int(replicaof[1])) if len(replicaof) == 2 else None
                extra = config.settings.get("bind", "").split()
                self.addresses[config.name] = [config.host, *extra]
            kept = node.data if node is not None and persistent(config) else {}
            loaded = load_fake_seed(config.seed) if config.seed is not None else kept
            node = _FakeNode(
                config=without_seed(config),
                state=NodeState.RUNNING,
                pid=self._next_pid,
                role=role,
                ready_after=self._ready_after,
                data=dict(loaded or {}),
                seed=config.seed,
            )
            self._nodes[config.name] = node
            self._cluster_started(config.name, node)
            started = self._info(node)
            if loaded is None:  # a seed it cannot load: it exits right after its start
                node.state, node.pid = NodeState.EXITED, None
        if loaded is None:
            self._notify(config.name)
        return started

    def stop(self, name: str, timeout: float = 5.0) -> None:
        self._exit(name, "stop")

    def kill(self, name: str) -> None:
        self._exit(name, "kill")

    def pause(self, name: str) -> None:
        with self._lock:
            self.calls.append(("pause", name))
            node = self._running(name)
            node.state = NodeState.PAUSED

    def resume(self, name: str) -> None:
        with self._lock:
            self.calls.append(("resume", name))
            node = self._running(name)
            node.state = NodeState.RUNNING

    def remove(self, name: str) -> None:
        with self._lock:
            self.calls.append(("remove", name))
            self._cluster_removed(name)
            node = self._nodes.pop(name, None)
            was_alive = node is not None and node.state is not NodeState.EXITED
        if was_alive:
            self._notify(name)

    def inspect(self, name: str) -> NodeInfo | None:
        with self._lock:
            self.calls.append(("inspect", name))
            node = self._nodes.get(name)
            return None if node is None else self._info(node)

    def list_managed(self) -> list[NodeInfo]:
        with self._lock:
            self.calls.append(("list_managed", ""))
            return [self._info(n) for _, n in sorted(self._nodes.items())]

    def probe(self, name: str, timeout: float) -> ProbeResult:
        with self._lock:
            self.calls.append(("probe", name))
            node = self._nodes.get(name)
            if node is None:
                return ProbeResult(False, None, None, f"no node named {name}", 0.0)
            if node.state is NodeState.EXITED:
                return ProbeResult(False, None, None, "Connection refused", 0.0)
            if node.state is NodeState.PAUSED or node.hung:
                return ProbeResult(False, None, None, "timed out", timeout * 1000.0)
            node.probes_since_start += 1
            if node.probes_since_start <= node.ready_after:
                return ProbeResult(False, None, None, "Connection refused", 0.1)
            if name in self._refuse_auth:
                return ProbeResult(False, None, None, "WRONGPASS invalid username-password pair or user is disabled.",
                                   0.1)
            details = self._replication(name, node)
            return ProbeResult(True, node.role, node.config.version, None, 0.1, details)

    def _replication(self, name: str, node: _FakeNode) -> dict[str, str]:
        """INFO replication's offsets as the fake knows them (marks and set_offset)."""
        if node.role != "slave":
            return {"master_repl_offset": str(self._marks.get(name, 0))} if node.role else {}
        primary = self.primary_of.get(name)
        followed = max((m for n, m in self._marks.items() if primary is not None
                        and self._nodes.get(n) is not None and self._nodes[n].config.host == primary[0]),
                       default=0)
        source = next((n for n in self._nodes.values() if primary is not None
                       and (n.config.host, n.config.port) == primary and n.state is NodeState.RUNNING), None)
        if source is not None and not link_works(node.config.security, source.config.security):
            return {"master_link_status": "down", "slave_repl_offset": str(self._offsets.get(name, 0))}
        offset = self._offsets.get(name, followed)
        where = {"master_host": primary[0], "master_port": str(primary[1])} if primary is not None else {}
        return {**where, "master_link_status": "up", "slave_repl_offset": str(offset)}

    def wait_ready(self, name: str, timeout: float) -> bool:
        """As a node reporting READY=1: True once per start, at once, for a running node that
        will answer its next probe; otherwise a real pause of at most PROBE_PAUSE (as for nodes
        that do not report), so a caller's probe loop keeps its pace."""
        with self._lock:
            self.calls.append(("wait_ready", name))
            node = self._nodes.get(name)
            serves = (node is not None and node.state is NodeState.RUNNING and not node.hung
                      and node.probes_since_start >= node.ready_after)
            if serves and node is not None and not node.ready_reported:
                node.ready_reported = True
                return True
        pause_for_probe(timeout)
        return False

    def replicate(self, name: str, primary: tuple[str, int] | None) -> None:
        with self._lock:
            self.calls.append(("replicate", name))
            node = self._command_target(name)
            node.role = "master" if primary is None else "slave"
            self.primary_of[name] = primary

    def hand_over(self, name: str, to: tuple[str, int], timeout: float = 5.0) -> None:
        with self._lock:
            self.calls.append(("hand_over", name))
            node = self._command_target(name)
            target = next((n for n, x in self._nodes.items() if (x.config.host, x.config.port) == to
                           and x.state is NodeState.RUNNING), None)
            if target is None or self._nodes[target].role != "slave" or target in self._refuse_commands or \
                    not link_works(node.config.security, self._nodes[target].config.security):
                raise RuntimeError_(f"node {name}: the switchover to {to[0]}:{to[1]} was aborted")
            self._nodes[target].role = "master"
            self.primary_of[target] = None
            node.role = "slave"
            self.primary_of[name] = to

    def disconnect_clients(self, name: str) -> None:
        with self._lock:
            self.calls.append(("disconnect_clients", name))
            self._command_target(name)

    def replication_mark(self, name: str) -> int:
        """Replicas of a fake primary receive its stream at once (unless set_offset says else)."""
        with self._lock:
            self.calls.append(("replication_mark", name))
            self._command_target(name)
            self._marks[name] = self._marks.get(name, 0) + 1
            return self._marks[name]

    def set_addresses(self, name: str, extra: Sequence[str]) -> None:
        with self._lock:
            self.calls.append(("set_addresses", name))
            node = self._command_target(name)
            wanted = [node.config.host, *[a for a in extra if a != node.config.host]]
            for other, addresses in self.addresses.items():
                taken = set(addresses[1:]) & set(wanted[1:])
                if other != name and taken and self._nodes.get(other) is not None and \
                        self._nodes[other].state is not NodeState.EXITED:
                    raise RuntimeError_(f"node {name}: bind {' '.join(taken)}: address already in use")
            self.addresses[name] = wanted

    def save_rdb(self, name: str, dest: Path, timeout: float = 600.0) -> int:
        """A small fake RDB recording the node and the data it serves (read_fake_rdb)."""
        with self._lock:
            self.calls.append(("save_rdb", name))
            node = self._get(name)
            if node.config.engine == "memcached":
                raise RuntimeError_(f"node {name} runs memcached, which has no RDB", temporary=False)
            if node.state is not NodeState.RUNNING:
                raise RuntimeError_(f"node {name} is {node.state.value}, not running")
            self._command_target(name)
            if name in self._failing_saves:
                raise RdbError(f"{node.config.host}:{node.config.port} closed the connection (injected)")
            data = self._data_seen(node)
        return write_fake_rdb(dest, name, data)

    def apply_users(self, name: str, users: Sequence[AclUser]) -> None:
        """As a real node would: only a running node started with security; kept for later
        starts (config_of shows them), recorded in `applied_users`."""
        with self._lock:
            self.calls.append(("apply_users", name))
            node = self._command_target(name)
            if node.config.security is None:
                raise RuntimeError_(f"node {name} was started without security: it has no users to change",
                                    temporary=False)
            security = replace(node.config.security, users=tuple(users))
            try:
                check_security(security)
            except ValueError as exc:
                raise RuntimeError_(f"node {name}: {exc}", temporary=False) from exc
            node.config = replace(node.config, security=security)
            self.applied_users.append((name, security.users))

    def node_stats(self, name: str, timeout: float) -> NodeStats | None:
        """What the node's counters would say: its role and offsets, the size of its data and
        its keys, plus whatever set_stats put there; None for a node that would not answer."""
        with self._lock:
            self.calls.append(("node_stats", name))
            node = self._nodes.get(name)
            if node is None or node.state is not NodeState.RUNNING or node.hung:
                return None
            data = self._data_seen(node)
            size = sum(len(k) + len(v) for k, v in data.items())
            reads = writes = None
            if node.config.engine == "memcached":
                fields = {"bytes": str(size), "curr_connections": "0", "cmd_get": "0", "cmd_set": "0"}
            else:
                # An empty redis holds about 1 MB of its own.
                fields = {"role": node.role or "master", "used_memory": str(EMPTY_REDIS_MEMORY + size),
                          "connected_clients": "0", "instantaneous_ops_per_sec": "0",
                          **self._replication(name, node)}
                if data:
                    fields["db0"] = f"keys={len(data)},expires=0,avg_ttl=0"
            fields.update(self._stats.get(name, {}))
            if node.config.engine != "memcached":
                reads, writes = int(fields.get("fake_read_calls", 0)), int(fields.get("fake_write_calls", 0))
            return NodeStats(engine=node.config.engine, fields=fields, cpu_seconds=node.cpu_seconds,
                             at=time.monotonic(), read_calls=reads, write_calls=writes)

    def set_exit_listener(self, listener: ExitListener) -> None:
        self._listener = listener

    def set_iam_verifier(self, verify: IamVerify) -> None:
        self.iam_verify = verify  # tests call it as the fronts of the process runtime would

    def close(self) -> None:
        self._listener = None

    # --- fault injection and test helpers ---

    def set_offset(self, name: str, offset: int) -> None:
        """The replication offset a replica reports (failover prefers the highest)."""
        with self._lock:
            self._offsets[name] = offset

    def refuse_commands(self, name: str, refuse: bool = True) -> None:
        """replicate/set_addresses on the node fail (e.g. a node that will not be promoted)."""
        with self._lock:
            (self._refuse_commands.add if refuse else self._refuse_commands.discard)(name)

    def listeners(self, address: str) -> list[str]:
        """Running nodes listening on an address (own or extra)."""
        with self._lock:
            return sorted(n for n, addrs in self.addresses.items() if address in addrs
                          and n in self._nodes and self._nodes[n].state is not NodeState.EXITED)

    def _command_target(self, name: str) -> _FakeNode:
        node = self._nodes.get(name)
        if node is None or node.state is not NodeState.RUNNING or node.hung or name in self._refuse_commands:
            raise RuntimeError_(f"node {name} does not answer")
        return node

    def crash(self, name: str) -> None:
        """The node exits on its own (as after a segfault or OOM kill); the listener is called."""
        self._exit(name, "crash")

    def hang(self, name: str) -> None:
        """Probes of the node time out, while the runtime still reports it running."""
        with self._lock:
            self._get(name).hung = True

    def unhang(self, name: str) -> None:
        with self._lock:
            self._get(name).hung = False

    def fail_next_starts(self, n: int, temporary: bool = True) -> None:
        """The next `n` starts of nodes that are not running raise RuntimeError_."""
        with self._lock:
            self._fail_starts = n
            self._fail_temporary = temporary

    def set_ready_after(self, n_probes: int) -> None:
        """Nodes started from now on fail their first `n_probes` probes (start-up time)."""
        with self._lock:
            self._ready_after = n_probes

    def set_role(self, name: str, role: str) -> None:
        """ "master" or "slave", as INFO replication reports it."""
        with self._lock:
            self._get(name).role = role

    def refuse_auth(self, name: str, refuse: bool = True) -> None:
        """Probes of the node fail as with a wrong admin password (WRONGPASS)."""
        with self._lock:
            (self._refuse_auth.add if refuse else self._refuse_auth.discard)(name)

    def fail_saves(self, name: str, fail: bool = True) -> None:
        """save_rdb of the node raises RdbError (a save that breaks off)."""
        with self._lock:
            (self._failing_saves.add if fail else self._failing_saves.discard)(name)

    def set_stats(self, name: str, fields: Mapping[str, str], cpu_seconds: float | None = None) -> None:
        """The engine fields node_stats reports from now on (INFO's or memcached's names; the
        read/write command calls as fake_read_calls / fake_write_calls), and its CPU seconds."""
        with self._lock:
            self._stats[name] = dict(fields)  # on top of what the fake derives
            node = self._nodes.get(name)
            if node is not None and cpu_seconds is not None:
                node.cpu_seconds = cpu_seconds

    def set_data(self, name: str, data: Mapping[str, str]) -> None:
        """The keys a node holds (as if a client had written them)."""
        with self._lock:
            self._get(name).data = dict(data)

    def data_of(self, name: str) -> dict[str, str]:
        """The keys the node serves: a replica serves its primary's."""
        with self._lock:
            return dict(self._data_seen(self._get(name)))

    def seed_of(self, name: str) -> str | None:
        """The seed the node was last started with."""
        with self._lock:
            return self._get(name).seed

    def config_of(self, name: str) -> NodeConfig:
        """The config the node was last started with."""
        with self._lock:
            return self._get(name).config

    def calls_of(self, method: str) -> list[str]:
        """Node names of every recorded call of `method`, in order."""
        with self._lock:
            return [n for m, n in self.calls if m == method]

    # --- internals ---

    def _get(self, name: str) -> _FakeNode:
        node = self._nodes.get(name)
        if node is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        return node

    def _running(self, name: str) -> _FakeNode:
        node = self._get(name)
        if node.state is NodeState.EXITED:
            raise RuntimeError_(f"node {name} is not running", temporary=False)
        return node

    def _exit(self, name: str, method: str) -> None:
        with self._lock:
            self.calls.append((method, name))
            node = self._nodes.get(name)
            if node is None or node.state is NodeState.EXITED:
                return
            node.state = NodeState.EXITED
            node.pid = None
            node.hung = False
        self._notify(name)

    def _data_seen(self, node: _FakeNode) -> dict[str, str]:
        """A replica's data is its primary's (up a chain of replicas; a loop ends it)."""
        seen = {node.config.name}
        while node.role == "slave" and (primary := self.primary_of.get(node.config.name)) is not None:
            source = next((n for n in self._nodes.values() if (n.config.host, n.config.port) == primary
                           and n.state is not NodeState.EXITED and n.config.name not in seen), None)
            if source is None:
                break
            node = source
            seen.add(node.config.name)
        return dict(node.data)

    def _notify(self, name: str) -> None:
        listener = self._listener
        if listener is not None:
            listener(name)

    def _info(self, node: _FakeNode) -> NodeInfo:
        return node_info(node.config, node.state, node.pid)
