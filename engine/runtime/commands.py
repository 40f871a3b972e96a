"""Probes, replication and address commands for runtimes whose nodes are reachable over TCP at
their own address (the process runtime, and the docker runtime)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from engine.adapters import adapter_for
from engine.adapters import redis as redis_adapter
from engine.rdb import save_rdb
from engine.runtime.base import NodeConfig, NodeInfo, NodeState, NodeStats, ProbeResult, RuntimeError_
from engine.stats import StatsReader, proc_cpu_seconds

COMMAND_TIMEOUT = 2.0


def probe_node(config: NodeConfig, timeout: float) -> ProbeResult:
    """NodeRuntime.probe of a node at its configured address (with its password, if any)."""
    try:
        password = config.settings.get("requirepass") or None
        return adapter_for(config.engine).probe(config.host, config.port, timeout, password=password)
    except Exception as exc:  # never raises, by contract
        return ProbeResult(False, None, None, f"probe failed: {exc}", 0.0)


class TcpNodeCommands:
    """Mixin: needs `inspect(name) -> NodeInfo | None` and `_config_of(name) -> NodeConfig | None`
    from the runtime it is mixed into."""

    def inspect(self, name: str) -> NodeInfo | None:  # provided by the runtime
        raise NotImplementedError

    def _config_of(self, name: str) -> NodeConfig | None:  # provided by the runtime
        raise NotImplementedError

    _stats: StatsReader  # set by the runtime's __init__

    def node_stats(self, name: str, timeout: float) -> NodeStats | None:
        """INFO all (or memcached `stats`) from the node's address, and the CPU it has used."""
        try:
            info = self.inspect(name)
            config = self._config_of(name)
        except Exception:  # never raises, by contract: a node the runtime cannot see has no stats
            return None
        if info is None or config is None or info.state is not NodeState.RUNNING:
            return None
        return self._stats.read(config, timeout, lambda: self._cpu_seconds(name, info))

    def _cpu_seconds(self, name: str, info: NodeInfo) -> float | None:
        """CPU seconds the node has used, as the OS counts them (the docker runtime: its cgroup)."""
        return proc_cpu_seconds(info.pid) if info.pid else None

    def save_rdb(self, name: str, dest: Path, timeout: float = 600.0) -> int:
        """The node's RDB as for a new replica, streamed to `dest` (engine.rdb.save_rdb) from the
        node's address, with its password: the same for processes and containers."""
        info = self.inspect(name)
        if info is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        if info.engine not in redis_adapter.RedisAdapter.engines:
            raise RuntimeError_(f"node {name} runs {info.engine}, which has no RDB", temporary=False)
        if info.state is not NodeState.RUNNING:
            raise RuntimeError_(f"node {name} is {info.state.value}, not running")
        return save_rdb(info.host, info.port, dest, password=self._password(name), timeout=timeout)

    def _password(self, name: str) -> str | None:
        """The node's requirepass, for the commands this runtime sends it."""
        config = self._config_of(name)
        return (config.settings.get("requirepass") or None) if config is not None else None

    def _redis(self, name: str, *args: str) -> None:
        info = self.inspect(name)
        if info is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        if info.engine not in ("redis", "valkey"):
            raise RuntimeError_(f"node {name} runs {info.engine}, which does not replicate", temporary=False)
        try:
            redis_adapter.execute(info.host, info.port, *args, timeout=COMMAND_TIMEOUT, password=self._password(name))
        except (OSError, redis_adapter.RespError) as exc:
            raise RuntimeError_(f"node {name}: {' '.join(args[:2])} failed: {exc}") from exc

    def replicate(self, name: str, primary: tuple[str, int] | None) -> None:
        """Make the node a replica of `primary`, or a primary itself when None."""
        if primary is None:
            self._redis(name, "REPLICAOF", "NO", "ONE")
        else:
            self._redis(name, "REPLICAOF", primary[0], str(primary[1]))

    def replication_mark(self, name: str) -> int:
        """Put a mark in a primary's replication stream (a PUBLISH on a private channel: it is
        replicated, and touches no key) and return the stream offset just after it. A replica
        whose offset reaches it has really received the stream, not only opened its link."""
        info = self.inspect(name)
        if info is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        password = self._password(name)
        try:
            redis_adapter.execute(info.host, info.port, "PUBLISH", "__elasticache_local__", "mark",
                                  timeout=COMMAND_TIMEOUT, password=password)
            reply = redis_adapter.execute(info.host, info.port, "INFO", "replication", timeout=COMMAND_TIMEOUT,
                                          password=password)
        except (OSError, redis_adapter.RespError) as exc:
            raise RuntimeError_(f"node {name}: replication mark failed: {exc}") from exc
        fields = redis_adapter.parse_info(reply if isinstance(reply, (str, bytes)) else b"")
        try:
            return int(fields.get("master_repl_offset", "0"))
        except ValueError as exc:
            raise RuntimeError_(f"node {name}: no replication offset") from exc

    def hand_over(self, name: str, to: tuple[str, int], timeout: float = 5.0) -> None:
        """A planned switchover without losing acknowledged writes: `FAILOVER TO` (Redis 6.2+,
        Valkey) pauses writes on this primary, waits until the replica at `to` has everything,
        promotes it and makes this node its replica. Returns once this node reports the switch."""
        info = self.inspect(name)
        if info is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        self._redis(name, "FAILOVER", "TO", to[0], str(to[1]), "TIMEOUT", str(int(timeout * 1000)))
        deadline = time.monotonic() + timeout + 1.0
        while time.monotonic() < deadline:
            try:
                reply = redis_adapter.execute(info.host, info.port, "INFO", "replication", timeout=COMMAND_TIMEOUT,
                                              password=self._password(name))
            except (OSError, redis_adapter.RespError):
                time.sleep(0.005)
                continue
            fields = redis_adapter.parse_info(reply if isinstance(reply, (str, bytes)) else b"")
            if fields.get("role") == "slave":
                return
            if fields.get("master_failover_state") == "no-failover":
                raise RuntimeError_(f"node {name}: the switchover to {to[0]}:{to[1]} was aborted")
            time.sleep(0.002)
        raise RuntimeError_(f"node {name}: the switchover to {to[0]}:{to[1]} did not finish")

    def disconnect_clients(self, name: str) -> None:
        """Close every client connection (not replicas'), so clients reconnect through their
        endpoint to wherever it points now."""
        self._redis(name, "CLIENT", "KILL", "TYPE", "normal")

    def set_addresses(self, name: str, extra: Sequence[str]) -> None:
        """Listen on the node's own address plus `extra` (floating endpoint addresses), at once.
        Redis and Valkey >= 7.0 change `bind` at runtime."""
        info = self.inspect(name)
        if info is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        addresses = [info.host, *[a for a in extra if a != info.host]]
        self._redis(name, "CONFIG", "SET", "bind", " ".join(addresses))
