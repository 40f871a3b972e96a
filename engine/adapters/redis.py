"""redis-server and valkey-server: config file rendering and a RESP health probe.

The probe speaks raw RESP over a socket on purpose: the engine has no client library
dependency, and one pipelined round trip (PING, INFO replication, INFO server) tells
liveness, role and version at once.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TypeAlias

from engine.adapters.base import CONFIG_FILE, LOG_FILE, PID_FILE, Launch, check_setting
from engine.rdb import EMPTY_RDB
from engine.runtime.base import NodeConfig, ProbeResult
from engine.versions import parse_version

__all__ = [
    "DEFAULT_PORT",
    "DataFile",
    "RedisAdapter",
    "RespError",
    "RespReply",
    "execute",
    "info",
    "parse_info",
    "persistent",
    "probe",
    "render_config",
    "start_data",
]

DEFAULT_PORT = 6379

# Directives the runtime depends on (paths, supervision); settings may not replace them.
RESERVED = frozenset({"port", "dir", "pidfile", "logfile", "daemonize", "include", "supervised", "proc-title-template"})

# The process title carries the config file path, so a pid found in a pid file can be checked
# against /proc/<pid>/cmdline (or `ps`) before it is trusted: pids get reused.
PROC_TITLE = "{title} {listen-addr} {server-mode} {config-file}"

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@,+=%-]+$")


def _quote(value: str) -> str:
    """A single config-file argument (redis parses lines with sdssplitargs)."""
    if _PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _save_lines(value: str) -> list[str]:
    # Redis < 7 takes one "seconds changes" pair per `save` line; several lines add up on every
    # version (the first `save` line of a file replaces the built-in default).
    parts = value.split()
    if not parts:
        return ['save ""']
    if len(parts) % 2:
        raise ValueError(f"invalid save setting {value!r}: expected pairs of 'seconds changes'")
    return [f"save {parts[i]} {parts[i + 1]}" for i in range(0, len(parts), 2)]


def render_config(config: NodeConfig, node_dir: PurePath, *, notify: bool = False) -> str:
    """The config file of one redis/valkey node. `config.settings` are extra directives; they
    replace a default of the same name (e.g. {"save": ""} turns snapshots off), and a `bind`
    setting adds addresses to the node's own. `notify`: `supervised systemd`, so the node sends
    READY=1 to $NOTIFY_SOCKET once it serves (after loading its data); a build without systemd
    support logs a warning and runs on. Raises ValueError for invalid settings."""
    for key, value in config.settings.items():
        check_setting(key, value)
        if key.lower() in RESERVED:
            raise ValueError(f"setting {key!r} is managed by the runtime and cannot be set")
    version = parse_version(config.version)
    is_redis = config.engine == "redis"

    binds = [config.host]
    directives: dict[str, str] = {
        "port": str(config.port),
        "dir": _quote(str(node_dir)),
        "dbfilename": "dump.rdb",
        "pidfile": _quote(str(node_dir / PID_FILE)),
        "logfile": _quote(str(node_dir / LOG_FILE)),
        "daemonize": "no",
        # Nodes listen on loopback addresses only; AUTH, when asked for, comes from settings.
        "protected-mode": "no",
        "maxmemory": f"{config.memory_mb}mb",
        # The managed service's default policy.
        "maxmemory-policy": "volatile-lru",
        # The built-in 5 s delay holds every first full sync of a new replica.
        "repl-diskless-sync-delay": "0",
        # Streamed full syncs: a save (engine.rdb) or a new replica never makes the node write
        # an RDB to its own disk (the default before 7.0 is to save to disk first).
        "repl-diskless-sync": "yes",
        # As on AWS, a node keeps no data across restarts unless AOF is on: no RDB save points
        # (which would also fork under load); start_data() keeps a restart from loading leftovers.
        "appendonly": "no",
        "save": "",
    }
    # Replicas on their own addresses would otherwise announce 127.0.0.1 (where they connect from).
    directives["slave-announce-ip" if is_redis and version < (5,) else "replica-announce-ip"] = config.host
    if not is_redis or version >= (6, 2):
        directives["proc-title-template"] = _quote(PROC_TITLE)
    if notify:
        directives["supervised"] = "systemd"
    for key, value in config.settings.items():
        if key.lower() == "bind":
            binds.extend(a for a in value.split() if a not in binds)
        else:
            directives[key.lower()] = value

    lines = [
        "# Written by the node runtime; rewritten at every start.",
        "bind " + " ".join(binds),
    ]
    for key, value in directives.items():
        if key == "save":
            lines.extend(_save_lines(value))
        else:
            lines.append(f"{key} {value}" if value != "" else f'{key} ""')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DataFile:
    """A file to put into a node's data directory before it starts: `source` (a file on this
    machine: link or copy it, never move or change it) or else `content`."""

    path: str  # relative to the data directory
    source: Path | None = None
    content: bytes = b""


def _lower(settings: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in settings.items()}


def persistent(config: NodeConfig) -> bool:
    """Whether the node keeps its data across restarts: AOF on, or RDB save points set."""
    settings = _lower(config.settings)
    return settings.get("appendonly", "no").lower() == "yes" or bool(settings.get("save", "").split())


def start_data(config: NodeConfig) -> tuple[DataFile, ...]:
    """What the data directory of a redis/valkey node must hold at this start so it loads what it
    should. A seed: as the RDB file, or with AOF on (redis then ignores the RDB file) as the base
    of a new AOF. No seed and no persistence: an empty RDB over any leftover (a replica's sync
    file, an earlier seed), so the node starts empty as after a reboot on AWS. Otherwise nothing:
    the node loads its own data."""
    settings = _lower(config.settings)
    rdb = settings.get("dbfilename", "dump.rdb")
    if config.seed is None:
        return () if persistent(config) else (DataFile(rdb, content=EMPTY_RDB),)
    seed = Path(config.seed)
    if settings.get("appendonly", "no").lower() != "yes":
        return (DataFile(rdb, seed),)
    aof = settings.get("appendfilename", "appendonly.aof")
    if config.engine == "redis" and parse_version(config.version) < (7,):
        return (DataFile(aof, seed),)  # an AOF may start with an RDB (its preamble), since 4.0
    # 7.0+: a directory of AOF parts listed in a manifest; the seed is the base, followed by an
    # empty increment (written over a stale one, to which the node would otherwise append).
    directory = settings.get("appenddirname", "appendonlydir")
    base, incr = f"{aof}.1.base.rdb", f"{aof}.1.incr.aof"
    manifest = f"file {base} seq 1 type b\nfile {incr} seq 1 type i\n"
    return (DataFile(f"{directory}/{base}", seed), DataFile(f"{directory}/{incr}"),
            DataFile(f"{directory}/{aof}.manifest", content=manifest.encode()))


class RespError(Exception):
    """An error reply (-ERR ..., -NOAUTH ..., -LOADING ...)."""


RespReply: TypeAlias = str | int | bytes | list["RespReply"] | RespError | None

_MAX_BULK = 64 * 1024 * 1024


class _Reader:
    """Reads RESP2 replies from a socket, every read bounded by one overall deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buf = bytearray()

    def _fill(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self._sock.settimeout(remaining)
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self._buf += chunk

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n + 2:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[: n + 2]
        return data

    def reply(self, depth: int = 0) -> RespReply:
        line = self._line()
        if not line:
            raise ConnectionError("empty RESP line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            if n > _MAX_BULK:
                raise ConnectionError(f"bulk reply too large ({n} bytes)")
            return self._exact(n)
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            if depth > 8:
                raise ConnectionError("RESP nesting too deep")
            return [self.reply(depth + 1) for _ in range(n)]
        raise ConnectionError(f"not a RESP reply: {line[:40]!r}")


def _encode(args: Sequence[str | bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _roundtrip(host: str, port: int, commands: Sequence[Sequence[str | bytes]], timeout: float) -> list[RespReply]:
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"".join(_encode(c) for c in commands))
        reader = _Reader(sock, deadline)
        return [reader.reply() for _ in commands]


def execute(
    host: str,
    port: int,
    *args: str | bytes,
    timeout: float = 2.0,
    password: str | None = None,
    username: str | None = None,
) -> RespReply:
    """Run one command on a fresh connection and return its reply; error replies raise
    RespError, network problems raise OSError."""
    commands: list[Sequence[str | bytes]] = []
    if password is not None:
        commands.append(["AUTH", username, password] if username else ["AUTH", password])
    commands.append(args)
    replies = _roundtrip(host, port, commands, timeout)
    for reply in replies:
        if isinstance(reply, RespError):
            raise reply
    return replies[-1]


def parse_info(text: str | bytes) -> dict[str, str]:
    """INFO output -> {field: value} (section headers and blank lines skipped)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def info(host: str, port: int, timeout: float, *, password: str | None = None) -> dict[str, str]:
    """Every field of `INFO all` (server, clients, memory, stats, replication, cpu, commandstats,
    keyspace ...); raises OSError, ValueError or RespError when the node does not answer."""
    reply = execute(host, port, "INFO", "all", timeout=timeout, password=password)
    if not isinstance(reply, bytes):
        raise ValueError(f"unexpected INFO reply {reply!r:.80}")
    return parse_info(reply)


def probe(
    host: str, port: int, timeout: float, *, password: str | None = None, username: str | None = None
) -> ProbeResult:
    """PING + INFO replication + INFO server in one pipelined round trip. Never raises."""
    started = time.monotonic()

    def elapsed() -> float:
        return (time.monotonic() - started) * 1000.0

    commands: list[Sequence[str]] = []
    if password is not None:
        commands.append(["AUTH", username, password] if username else ["AUTH", password])
    commands += [["PING"], ["INFO", "replication"], ["INFO", "server"]]
    try:
        replies = _roundtrip(host, port, commands, timeout)
    except (OSError, ValueError) as exc:  # TimeoutError and ConnectionError are OSErrors
        return ProbeResult(False, None, None, _describe(exc), elapsed())
    for reply in replies:
        if isinstance(reply, RespError):  # NOAUTH, LOADING, MASTERDOWN ...
            return ProbeResult(False, None, None, str(reply), elapsed())
    pong, replication, server = replies[-3:]
    if pong != "PONG":
        return ProbeResult(False, None, None, f"unexpected PING reply {pong!r}", elapsed())
    if not isinstance(replication, bytes) or not isinstance(server, bytes):
        return ProbeResult(False, None, None, "unexpected INFO reply", elapsed())
    repl = parse_info(replication)
    srv = parse_info(server)
    # Valkey keeps redis_version at 7.2.4 for client compatibility and adds valkey_version.
    version = srv.get("valkey_version") or srv.get("redis_version")
    return ProbeResult(True, repl.get("role"), version, None, elapsed(), details=repl)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text or type(exc).__name__


class RedisAdapter:
    """Adapter for redis-server and valkey-server (same config format and protocol)."""

    engines: tuple[str, ...] = ("redis", "valkey")
    default_port: int = DEFAULT_PORT

    def launch(self, config: NodeConfig, binary: str, node_dir: PurePath, *, run_as_root: bool = False,
               notify: bool = False) -> Launch:
        conf = node_dir / CONFIG_FILE
        return Launch(
            argv=(binary, str(conf)),
            marker=str(conf),
            files={CONFIG_FILE: render_config(config, node_dir, notify=notify)},
            notify=notify,
        )

    def probe(self, host: str, port: int, timeout: float, *, password: str | None = None) -> ProbeResult:
        return probe(host, port, timeout, password=password)

    def stats(self, host: str, port: int, timeout: float, *, password: str | None = None) -> dict[str, str]:
        return info(host, port, timeout, password=password)
