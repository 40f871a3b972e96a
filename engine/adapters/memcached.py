"""memcached: command line and a `version` health probe."""

from __future__ import annotations

import socket
import time
from pathlib import PurePath

from engine.adapters.base import PID_FILE, Launch, check_setting
from engine.runtime.base import NodeConfig, ProbeResult

__all__ = ["DEFAULT_PORT", "MemcachedAdapter", "argv", "probe", "stats"]

DEFAULT_PORT = 11211

# Long option names -> the short flags used below, so a setting replaces its default.
_ALIASES = {
    "--listen": "-l",
    "--port": "-p",
    "--udp-port": "-U",
    "--memory-limit": "-m",
    "--threads": "-t",
    "--conn-limit": "-c",
    "--pidfile": "-P",
    "--user": "-u",
    "--daemon": "-d",
}
# What the runtime depends on: the address, the pid file, running in the foreground.
RESERVED = frozenset({"-l", "-p", "-P", "-u", "-d"})


def argv(config: NodeConfig, binary: str, *, pidfile: PurePath | None, run_as_root: bool = False) -> list[str]:
    """memcached's command line. `config.settings` are extra flags, e.g. {"-c": "1024"} (replaces
    the default) or {"-o": "modern"}; an empty value gives a bare flag. Raises ValueError."""
    flags: dict[str, str] = {
        "-l": config.host,
        "-p": str(config.port),
        "-U": "0",  # no UDP, as on the managed service
        "-m": str(config.memory_mb),
        "-t": str(config.threads),
        "-c": "4096",
    }
    if pidfile is not None:
        flags["-P"] = str(pidfile)
    if run_as_root:
        flags["-u"] = "root"  # memcached refuses to run as root without -u
    for key, value in config.settings.items():
        check_setting(key, value)
        flag = _ALIASES.get(key, key)
        if not flag.startswith("-"):
            raise ValueError(f"memcached setting {key!r} must be a flag such as '-c' or '--conn-limit'")
        if flag in RESERVED:
            raise ValueError(f"memcached flag {key!r} is managed by the runtime and cannot be set")
        flags[flag] = value
    args = [binary]
    for flag, value in flags.items():
        args.append(flag)
        if value != "":
            args.append(value)
    return args


def probe(host: str, port: int, timeout: float, *, password: str | None = None) -> ProbeResult:
    """`version` -> VERSION x.y.z. Never raises. (`password` is accepted for the adapter protocol;
    memcached's SASL is binary-protocol only and not probed.)"""
    started = time.monotonic()
    deadline = started + timeout

    def fail(error: str) -> ProbeResult:
        return ProbeResult(False, None, None, error, (time.monotonic() - started) * 1000.0)

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"version\r\n")
            data = b""
            while b"\r\n" not in data:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return fail("timed out")
                sock.settimeout(remaining)
                chunk = sock.recv(1024)
                if not chunk:
                    return fail("connection closed by the server")
                data += chunk
                if len(data) > 4096:
                    return fail("reply too long")
    except TimeoutError:
        return fail("timed out")
    except OSError as exc:
        return fail(exc.strerror or str(exc) or type(exc).__name__)
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if not line.startswith("VERSION "):
        return fail(f"unexpected reply {line[:80]!r}")
    return ProbeResult(True, None, line[len("VERSION ") :].strip(), None, (time.monotonic() - started) * 1000.0)


def stats(host: str, port: int, timeout: float) -> dict[str, str]:
    """`stats` -> {name: value} (curr_connections, bytes, cmd_get, ...); raises OSError (a
    TimeoutError too) or ValueError when the node does not answer it."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            data += chunk
            if len(data) > 1 << 20 or data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
                raise ValueError(f"unexpected stats reply {data[:80]!r}")
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            fields[parts[1]] = parts[2]
    return fields


class MemcachedAdapter:
    engines: tuple[str, ...] = ("memcached",)
    default_port: int = DEFAULT_PORT

    def launch(self, config: NodeConfig, binary: str, node_dir: PurePath, *, run_as_root: bool = False,
               notify: bool = False) -> Launch:
        # memcached has no readiness report: its starts are found by probing alone.
        pidfile = node_dir / PID_FILE
        # The pid file path is in argv, so it identifies this node's process (pid reuse).
        return Launch(
            argv=tuple(argv(config, binary, pidfile=pidfile, run_as_root=run_as_root)),
            marker=str(pidfile),
        )

    def probe(self, host: str, port: int, timeout: float, *, password: str | None = None) -> ProbeResult:
        return probe(host, port, timeout)

    def stats(self, host: str, port: int, timeout: float, *, password: str | None = None) -> dict[str, str]:
        return stats(host, port, timeout)
