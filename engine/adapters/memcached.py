"""memcached: command line and a `version` health probe.

Security: TLS with `-Z -o ssl_chain_cert=...,ssl_key=...` (mode required only: memcached serves
TLS and plain text on different listeners, never on one port). SASL with `-S` where the
customer has users: Debian's memcached 1.6 is built with Cyrus SASL but not with memcached's
own password file (`--enable-sasl-pwdb`), so the users go into a Cyrus sasldb (made by
saslpasswd2, package sasl2-bin) found through $SASL_CONF_PATH/memcached.conf; builds with the
password file (the official image) read $MEMCACHED_SASL_PWDB, which is written as well. With
SASL on the text protocol is off: probes and stats speak the binary protocol
(engine.adapters.memcached_binary), authenticated as the service's admin user.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath

from engine.access import Reach, receive
from engine.adapters.base import PID_FILE, Launch, SaslDb, check_setting
from engine.adapters.memcached_binary import sasl_stats, sasl_version
from engine.runtime.base import NodeConfig, ProbeResult
from engine.security import check_security, sasl_users
from engine.versions import tls_capable

__all__ = ["DEFAULT_PORT", "SASL_DIR", "MemcachedAdapter", "argv", "find_saslpasswd2", "probe", "sasl_files",
           "stats", "write_sasldb"]

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
# What security sets (TLS, SASL, and the binary protocol SASL needs).
MANAGED = frozenset({"-Z", "--enable-ssl", "-S", "--enable-sasl", "-B", "--protocol"})

SASL_DIR = "sasl"  # in the node directory: memcached.conf, sasldb2, pwdb


def argv(config: NodeConfig, binary: str, *, pidfile: PurePath | None, run_as_root: bool = False,
         tls_files: tuple[str, str] | None = None) -> list[str]:
    """memcached's command line. `config.settings` are extra flags, e.g. {"-c": "1024"} (replaces
    the default) or {"-o": "modern"}; an empty value gives a bare flag. `config.security`: TLS
    (`tls_files`: the cert and key as the node sees them, if not where they are here) and SASL.
    Raises ValueError."""
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
    _secure(config, flags, tls_files)
    args = [binary]
    for flag, value in flags.items():
        args.append(flag)
        if value != "":
            args.append(value)
    return args


def _secure(config: NodeConfig, flags: dict[str, str], tls_files: tuple[str, str] | None) -> None:
    security = config.security
    if security is None:
        return
    check_security(security)
    clash = sorted(k for k in config.settings if _ALIASES.get(k, k) in MANAGED)
    if clash:
        raise ValueError(f"memcached flag(s) {', '.join(clash)} cannot be set on a node with users or TLS")
    if sasl_users(security):
        flags["-S"] = ""
    tls = security.tls
    if tls is None:
        return
    if tls.mode != "required":
        raise ValueError("memcached has no TLS mode preferred (TLS and plain text on one port): use required")
    cert, key = tls_files or (tls.cert_file, tls.key_file)
    if any(c in p for p in (cert, key) for c in ", "):
        raise ValueError("memcached TLS file paths may not contain commas or spaces (they go into -o)")
    flags["-Z"] = ""
    options = [o for o in flags.get("-o", "").split(",") if o]
    flags["-o"] = ",".join([*options, f"ssl_chain_cert={cert}", f"ssl_key={key}"])


def sasl_files(config: NodeConfig, sasl_dir: PurePath) -> tuple[dict[str, str], dict[str, str]]:
    """(files by name in `sasl_dir`, environment) for a node with SASL on; empty without.
    memcached.conf makes Cyrus take PLAIN against sasldb2; pwdb is for builds that read it."""
    users = sasl_users(config.security) if config.security is not None else {}
    if not users:
        return {}, {}
    conf = f"mech_list: plain\nsasldb_path: {sasl_dir / 'sasldb2'}\n"
    pwdb = "".join(f"{name}:{password}\n" for name, password in users.items())
    return ({"memcached.conf": conf, "pwdb": pwdb},
            {"SASL_CONF_PATH": str(sasl_dir), "MEMCACHED_SASL_PWDB": str(sasl_dir / "pwdb")})


def find_saslpasswd2() -> str | None:
    """saslpasswd2 (Debian puts it in /usr/sbin, outside a normal user's PATH)."""
    for candidate in ("/usr/sbin/saslpasswd2", "/usr/bin/saslpasswd2", "/usr/local/sbin/saslpasswd2"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def write_sasldb(path: Path, users: Mapping[str, str], realm: str | None = None) -> None:
    """Create the Cyrus sasldb at `path` holding exactly `users`, replacing it at once (Cyrus
    opens it at each authentication, so a running node sees the new users at its next one).
    `realm`: memcached asks for users in the realm of its host name. Raises ValueError when
    saslpasswd2 is missing or fails."""
    tool = find_saslpasswd2()
    if tool is None:
        raise ValueError("memcached SASL needs saslpasswd2 to write its user database: install it "
                         "(Debian/Ubuntu: apt install sasl2-bin)")
    realm = realm or socket.gethostname()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sasldb2.", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # saslpasswd2 -c creates it
    try:
        for name, password in users.items():
            done = subprocess.run([tool, "-p", "-c", "-a", "memcached", "-u", realm, "-f", tmp, name],
                                  input=password.encode(), capture_output=True, timeout=10, check=False)
            if done.returncode != 0:
                raise ValueError(f"saslpasswd2 failed for user {name!r}: "
                                 f"{done.stderr.decode('utf-8', 'replace').strip() or done.returncode}")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _text_version(reach: Reach, timeout: float) -> str:
    """`version` -> VERSION x.y.z over the text protocol; raises OSError or ValueError."""
    deadline = time.monotonic() + timeout
    with reach.connect(timeout) as sock:
        sock.sendall(b"version\r\n")
        data = _read_until(sock, deadline, lambda d: b"\r\n" in d, 4096)
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if not line.startswith("VERSION "):
        raise ValueError(f"unexpected reply {line[:80]!r}")
    return line[len("VERSION "):].strip()


def _read_until(sock: socket.socket, deadline: float, done: Callable[[bytes], bool], limit: int) -> bytes:
    data = b""
    while not done(data):
        data += receive(sock, deadline)
        if len(data) > limit or data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            raise ValueError(f"unexpected reply {data[:80]!r}")
    return data


def probe(reach: Reach, timeout: float) -> ProbeResult:
    """`version` (binary protocol after SASL PLAIN where SASL is on). Never raises."""
    started = time.monotonic()

    def took() -> float:
        return (time.monotonic() - started) * 1000.0

    try:
        version = sasl_version(reach, timeout) if reach.password is not None else _text_version(reach, timeout)
    except TimeoutError:
        return ProbeResult(False, None, None, "timed out", took())
    except OSError as exc:
        return ProbeResult(False, None, None, exc.strerror or str(exc) or type(exc).__name__, took())
    except ValueError as exc:
        return ProbeResult(False, None, None, str(exc), took())
    return ProbeResult(True, None, version, None, took())


def stats(reach: Reach, timeout: float) -> dict[str, str]:
    """`stats` -> {name: value} (curr_connections, bytes, cmd_get, ...); raises OSError (a
    TimeoutError too) or ValueError when the node does not answer it."""
    if reach.password is not None:
        return sasl_stats(reach, timeout)
    deadline = time.monotonic() + timeout
    with reach.connect(timeout) as sock:
        sock.sendall(b"stats\r\n")
        data = _read_until(sock, deadline, lambda d: d.endswith(b"END\r\n"), 1 << 20)
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
               notify: bool = False, backend: tuple[int, int] | None = None) -> Launch:
        # memcached has no readiness report: its starts are found by probing alone.
        if config.security is not None and config.security.tls is not None and not tls_capable(binary):
            raise ValueError(f"{binary} was built without TLS: install memcached from your OS packages")
        pidfile = node_dir / PID_FILE
        sasl_dir = node_dir / SASL_DIR
        files, env = sasl_files(config, sasl_dir)
        users = sasl_users(config.security) if config.security is not None else {}
        # The pid file path is in argv, so it identifies this node's process (pid reuse).
        return Launch(
            argv=tuple(argv(config, binary, pidfile=pidfile, run_as_root=run_as_root)),
            marker=str(pidfile),
            files={f"{SASL_DIR}/{name}": text for name, text in files.items()},
            env=env,
            sasl=SaslDb(f"{SASL_DIR}/sasldb2", users) if users else None,
        )

    def probe(self, reach: Reach, timeout: float) -> ProbeResult:
        return probe(reach, timeout)

    def stats(self, reach: Reach, timeout: float) -> dict[str, str]:
        return stats(reach, timeout)
