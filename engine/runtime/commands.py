"""Probes, replication and address commands for runtimes whose nodes are reachable over TCP at
their own address (the process runtime, and the docker runtime).

Every connection goes where `_reach(name)` says (engine.access.reach_of): with TLS when the
node's port speaks it, as the service's admin user when the node has security.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from engine.access import Reach, TlsContexts, has_acl, reach_of
from engine.adapters import adapter_for
from engine.adapters import redis as redis_adapter
from engine.adapters.redis_probes import ProbeConnections
from engine.adapters.redis_security import channels_known
from engine.rdb import save_rdb
from engine.runtime import base
from engine.runtime.base import NodeConfig, NodeInfo, NodeState, NodeStats, ProbeResult, RuntimeError_
from engine.runtime.cluster_commands import TcpClusterCommands
from engine.security import AclUser, check_security, effective_users
from engine.stats import StatsReader, proc_cpu_seconds

COMMAND_TIMEOUT = 2.0


class TcpNodeCommands(TcpClusterCommands):
    """Mixin: needs `inspect(name) -> NodeInfo | None` and `_config_of(name) -> NodeConfig | None`
    from the runtime it is mixed into, and `_stats` / `_tls` set by its __init__."""

    def inspect(self, name: str) -> NodeInfo | None:  # provided by the runtime
        raise NotImplementedError

    def _config_of(self, name: str) -> NodeConfig | None:  # provided by the runtime
        raise NotImplementedError

    def _plain_port(self, name: str) -> int | None:
        """The node's own plain-text port behind a TLS-preferred forwarder (runtimes with one)."""
        return None

    def _store_config(self, name: str, config: NodeConfig) -> None:
        """Keep `config` as the node's (apply_users changed its users)."""
        raise NotImplementedError

    def _apply_sasl(self, name: str, config: NodeConfig) -> None:
        """Memcached: make the running node's SASL users those of `config`."""
        raise RuntimeError_(f"node {name}: memcached SASL users change at its next start here", temporary=False)

    _stats: StatsReader
    _tls: TlsContexts
    _probes: ProbeConnections  # redis/valkey probes on one kept connection per node

    def _reach(self, config: NodeConfig) -> Reach:
        try:
            return reach_of(config, self._tls, plain_port=self._plain_port(config.name))
        except OSError as exc:
            raise RuntimeError_(f"node {config.name}: cannot read its CA file: {exc.strerror or exc}",
                                temporary=False) from exc

    def _probe(self, config: NodeConfig, timeout: float) -> ProbeResult:
        """NodeRuntime.probe of a node at its configured address, as the engine reaches it."""
        try:
            if config.engine in redis_adapter.RedisAdapter.engines:
                return self._probes.probe(config.name, self._reach(config), timeout)
            return adapter_for(config.engine).probe(self._reach(config), timeout)
        except Exception as exc:  # never raises, by contract
            return ProbeResult(False, None, None, f"probe failed: {exc}", 0.0)

    def node_stats(self, name: str, timeout: float) -> NodeStats | None:
        """INFO all (or memcached `stats`) from the node's address, and the CPU it has used."""
        try:
            info = self.inspect(name)
            config = self._config_of(name)
            if info is None or config is None or info.state is not NodeState.RUNNING:
                return None
            reach = self._reach(config)
        except Exception:  # never raises, by contract: a node the runtime cannot see has no stats
            return None
        return self._stats.read(config, reach, timeout, lambda: self._cpu_seconds(name, info))

    def _cpu_seconds(self, name: str, info: NodeInfo) -> float | None:
        """CPU seconds the node has used, as the OS counts them (the docker runtime: its cgroup)."""
        return proc_cpu_seconds(info.pid) if info.pid else None

    def save_rdb(self, name: str, dest: Path, timeout: float = 600.0) -> int:
        """The node's RDB as for a new replica, streamed to `dest` (engine.rdb.save_rdb) from the
        node's address, as the engine reaches it: the same for processes and containers."""
        config = self._running_redis(name, "has no RDB")
        return save_rdb(self._reach(config), dest, timeout=timeout)

    def _running_redis(self, name: str, what: str) -> NodeConfig:
        info = self.inspect(name)
        config = self._config_of(name)
        if info is None or config is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        if info.engine not in redis_adapter.RedisAdapter.engines:
            raise RuntimeError_(f"node {name} runs {info.engine}, which {what}", temporary=False)
        if info.state is not NodeState.RUNNING:
            raise RuntimeError_(f"node {name} is {info.state.value}, not running")
        return config

    def _redis(self, name: str, *args: str) -> redis_adapter.RespReply:
        return self._redis_all(name, [args])[-1]

    def _redis_all(self, name: str, commands: Sequence[Sequence[str]]) -> list[redis_adapter.RespReply]:
        config = self._config_of(name)
        if config is None or self.inspect(name) is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        if config.engine not in redis_adapter.RedisAdapter.engines:
            raise RuntimeError_(f"node {name} runs {config.engine}, which does not replicate", temporary=False)
        try:
            return redis_adapter.execute_all(self._reach(config), commands, timeout=COMMAND_TIMEOUT)
        except (OSError, redis_adapter.RespError) as exc:
            raise RuntimeError_(f"node {name}: {' '.join(commands[0][:2])} failed: {exc}") from exc

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
        reply = self._redis_all(name, [["PUBLISH", "__elasticache_local__", "mark"], ["INFO", "replication"]])[-1]
        fields = redis_adapter.parse_info(reply if isinstance(reply, (str, bytes)) else b"")
        try:
            return int(fields.get("master_repl_offset", "0"))
        except ValueError as exc:
            raise RuntimeError_(f"node {name}: no replication offset") from exc

    def hand_over(self, name: str, to: tuple[str, int], timeout: float = 5.0) -> None:
        """A planned switchover without losing acknowledged writes: `FAILOVER TO` (Redis 6.2+,
        Valkey) pauses writes on this primary, waits until the replica at `to` has everything,
        promotes it and makes this node its replica. Returns once this node reports the switch."""
        self._redis(name, "FAILOVER", "TO", to[0], str(to[1]), "TIMEOUT", str(int(timeout * 1000)))
        deadline = time.monotonic() + timeout + 1.0
        while time.monotonic() < deadline:
            try:
                reply = self._redis(name, "INFO", "replication")
            except RuntimeError_:
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

    def apply_users(self, name: str, users: Sequence[AclUser]) -> None:
        """Make the node's users `users` now, without a restart and without dropping connected
        clients, and keep them for its next start. Redis/Valkey: as the admin user, `ACL SETUSER
        <name> reset <rules>` for each (atomic per user: a password rotation `default on >old
        >new`, then `default on resetpass >new`, never locks a client out), `ACL DELUSER` for
        users no longer listed, then `ACL SAVE` into the node's ACL file."""
        config = self._config_of(name)
        if config is None or self.inspect(name) is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        if config.security is None:
            raise RuntimeError_(f"node {name} was started without security: it has no users to change",
                                temporary=False)
        updated = replace(config, security=replace(config.security, users=tuple(users)))
        try:
            check_security(updated.security)  # type: ignore[arg-type]  # set just above
        except ValueError as exc:
            raise RuntimeError_(f"node {name}: {exc}", temporary=False) from exc
        if config.engine == "memcached":
            self._apply_sasl(name, updated)
        else:
            self._apply_acl(name, updated)
        self._store_config(name, updated)

    def apply_config(self, name: str, settings: Mapping[str, str]) -> None:
        """CONFIG SET each directive (one per command: before 7.0 CONFIG SET takes one pair),
        pipelined on one connection, then keep them with the node's config."""
        config = self._running_redis(name, "takes its options at start only")
        base.check_live_settings(name, settings)
        if settings:
            self._redis_all(name, [["CONFIG", "SET", k, v] for k, v in settings.items()])
        self._store_config(name, replace(config, settings={**config.settings, **settings}))

    def set_tls_replication(self, name: str, on: bool) -> None:
        """As NodeRuntime.set_tls_replication: CONFIG SET of the replication settings the node's
        config file would have (one command each: a multi-argument CONFIG SET is 7.0+), then
        `CLIENT KILL TYPE master` (a primary has no such link: nothing is killed)."""
        config = self._running_redis(name, "does not replicate")
        security = config.security
        if security is None or security.tls is None:
            raise RuntimeError_(f"node {name} was started without TLS", temporary=False)
        admin = security.admin
        self._redis_all(name, [["CONFIG", "SET", "masteruser", admin.name if on else ""],
                               ["CONFIG", "SET", "masterauth", admin.password if on else ""],
                               ["CONFIG", "SET", "tls-replication", "yes" if on else "no"],
                               ["CLIENT", "KILL", "TYPE", "master"]])
        self._store_config(name, replace(config, security=replace(security, tls=replace(security.tls, replication=on))))

    def _apply_acl(self, name: str, config: NodeConfig) -> None:
        security = config.security
        assert security is not None
        self._running_redis(name, "has no ACL users")
        if not has_acl(config):
            raise RuntimeError_(f"node {name} runs redis {config.version}, which has no ACL users", temporary=False)
        wanted = effective_users(security, channels=channels_known(config))[1:]  # the admin stays as it is
        present = self._redis(name, "ACL", "USERS")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in (present if isinstance(present, list) else [])]
        keep = {security.admin.name, "default", *(u.name for u in wanted)}
        commands: list[list[str]] = [["ACL", "SETUSER", u.name, "reset", *u.rules] for u in wanted]
        commands += [["ACL", "DELUSER", n] for n in names if n not in keep]
        commands.append(["ACL", "SAVE"])
        self._redis_all(name, commands)
