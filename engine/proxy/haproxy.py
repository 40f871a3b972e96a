"""L4 forwarders as HAProxy processes, re-pointed through HAProxy's runtime API.

Where a stable endpoint cannot be a floating address on the node itself (an engine older than
7.0 cannot `CONFIG SET bind`; the 127.0.0.1 ports mode has no address to float), a proxy stands
in. HAProxy moves bytes in C with one copy per direction, where a Python forwarder costs every
request two trips through an event loop; so it is the proxy whenever the binary is installed.

One process per endpoint: its configuration is written once (a frontend on the endpoint's
address, a backend with one server slot) and never reloaded; re-pointing is `set server ... addr`
on the admin socket, so a change takes effect for the next connection without dropping the
others, unless asked to (`shutdown sessions server`). Every change is read back with
`show servers state` before the call returns.

Thread safe: one lock per pool; each call is a few short socket round trips.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.files import PRIVATE_UMASK, open_private, private_dir, write_private
from engine.proxy.tcp import BindError, ProxyError

log = logging.getLogger(__name__)

BACKEND = "node"
SERVER = f"{BACKEND}/{BACKEND}"
# Where a server slot points while the endpoint has no target: never connected to (the slot is
# in maintenance), but HAProxy needs an address to parse.
PARKED = ("127.0.0.1", 1)
# Redis clients hold idle connections for hours (pub/sub, pools), and ElastiCache closes none:
# the longest timeout HAProxy accepts rather than none (HAProxy warns about a missing one).
IDLE_TIMEOUT = "24d"
# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited or DNS maintenance means no new
# connections. CMAINT (0x04, "disabled" in the configuration) stays set after `state ready` as a
# record of the configuration, so it is not one of them.
ADMIN_MAINT = 0x01 | 0x02 | 0x20


def find_haproxy(extra_paths: list[Path] | tuple[Path, ...] = ()) -> str | None:
    for directory in extra_paths:
        candidate = Path(directory) / "haproxy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("haproxy")
    if found is None:  # Debian puts it in /usr/sbin, outside a normal user's PATH
        found = next((str(p) for p in (Path("/usr/sbin/haproxy"), Path("/usr/local/sbin/haproxy"))
                      if p.is_file() and os.access(p, os.X_OK)), None)
    return found


@dataclass(frozen=True)
class FrontConfig:
    """More of a forwarder's configuration (an IAM front: engine/proxy/iam_haproxy.py): options
    of its `bind` line (`ssl crt <pem>`), lines of its global and frontend sections."""

    bind_options: str = ""
    global_lines: tuple[str, ...] = ()
    frontend_lines: tuple[str, ...] = ()
    # A unix socket the server slot connects to instead of its target's address (an IAM front's
    # node): fixed for the process's life, never re-pointed.
    server_socket: str | None = None
    # More backends with the same one server (an IAM front's `iam`: the sessions a token opened,
    # told apart in `show sess`).
    backends: tuple[str, ...] = ()


def render_config(*, host: str, port: int, target: tuple[str, int] | None, socket_path: Path,
                  front: FrontConfig | None = None) -> str:
    addr, srv_port = target or PARKED
    disabled = "" if target is not None else " disabled"
    bind_host = f"[{host}]" if ":" in host else host
    front = front or FrontConfig()
    bind = f"    bind {bind_host}:{port}" + (f" {front.bind_options}" if front.bind_options else "")
    return "\n".join([
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        *(f"    {line}" for line in front.global_lines),
        # One thread: a local endpoint's load is small, and each thread would take a core from
        # the nodes it fronts on a small machine.
        "    nbthread 1",
        "    maxconn 4000",  # two descriptors a connection: within common ulimits
        # HAProxy binds with SO_REUSEPORT by default, which would let a second process share an
        # endpoint address silently; one address, one listener.
        "    noreuseport",
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        f"    timeout client {IDLE_TIMEOUT}",
        f"    timeout server {IDLE_TIMEOUT}",
        "",
        "frontend endpoint",
        bind,
        *(f"    {line}" for line in front.frontend_lines),
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        # No health checks: the control plane's health monitor decides where the endpoint goes.
        f"    server {BACKEND} {_server_address(addr, srv_port, front)}{disabled}",
        "",
        *(f"backend {name}\n    server {name} {_server_address(addr, srv_port, front)}{disabled}\n"
          for name in front.backends),
    ])


def _server_address(addr: str, port: int, front: FrontConfig) -> str:
    return f"unix@{front.server_socket}" if front.server_socket else f"{addr}:{port}"


@dataclass(frozen=True)
class ServerState:
    addr: str
    port: int
    admin_state: int

    @property
    def target(self) -> tuple[str, int] | None:
        return None if self.admin_state & ADMIN_MAINT else (self.addr, self.port)


def parse_servers_state(text: str) -> ServerState:
    """The one server of `show servers state <backend>` (format version 1)."""
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            header = line[1:].split()
            continue
        fields = line.split()
        if header is None or len(fields) < len(header) or not fields:
            continue
        row = dict(zip(header, fields, strict=False))
        if row.get("srv_name") == BACKEND:
            return ServerState(row["srv_addr"], int(row["srv_port"]), int(row["srv_admin_state"]))
    raise ProxyError(f"HAProxy did not report its server: {text.strip()[:300]!r}")


class _Endpoint:
    def __init__(self, name: str, host: str, port: int, workdir: Path, rundir: Path) -> None:
        digest = hashlib.sha1(name.encode()).hexdigest()[:16]
        self.name, self.host, self.port = name, host, port
        self.config_path = workdir / f"{digest}.cfg"
        self.pid_path = workdir / f"{digest}.pid"
        self.log_path = workdir / f"{digest}.log"
        # Unix socket paths are limited to about 100 bytes: sockets live in a short directory.
        self.socket_path = rundir / f"{digest}.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: tuple[str, int] | None = None
        self.front: FrontConfig | None = None


class HaproxyForwarders:
    """TCP forwarders, each a HAProxy process the pool starts, re-points and stops."""

    def __init__(self, workdir: Path, binary: str = "haproxy", *, start_timeout: float = 5.0,
                 call_timeout: float = 2.0) -> None:
        self._workdir = workdir
        self._binary = binary
        self._start_timeout = start_timeout
        self._call_timeout = call_timeout
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._rundir: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._rundir is None:
                private_dir(self._workdir)
                self._rundir = Path(tempfile.mkdtemp(prefix="ecl-haproxy-"))
                self._stop_leftovers()

    def close(self) -> None:
        """Stop every forwarder. Safe to repeat."""
        with self._lock:
            for endpoint in list(self._endpoints.values()):
                self._stop(endpoint)
            self._endpoints.clear()
            if self._rundir is not None:
                shutil.rmtree(self._rundir, ignore_errors=True)
                self._rundir = None

    # -- forwarders ----------------------------------------------------------------------------

    def add(self, name: str, host: str, port: int, target: tuple[str, int] | None, *,
            front: FrontConfig | None = None) -> None:
        """Listen on host:port and send each connection to `target` (raises BindError); `front`:
        more configuration, fixed at the first add (a later add with another one is refused).

        Adding the same name again with the same address only re-points it.
        """
        with self._lock:
            existing = self._endpoints.get(name)
            if existing is not None:
                if (existing.host, existing.port, existing.front) != (host, port, front):
                    raise ProxyError(f"endpoint {name!r} already listens on {existing.host}:{existing.port}"
                                     + (" with another configuration" if existing.port == port else ""))
                if existing.proc is not None and existing.proc.poll() is None:
                    try:
                        # Asked, not assumed: it must answer, and say where it points now.
                        existing.target = self._state(existing).target
                        if front is None or front.server_socket is None:  # a socket is not re-pointed
                            self._point(existing, target, drop_existing=False)
                        return
                    except ProxyError as exc:
                        # Alive but not answering its admin socket (frozen, hung): replaced.
                        log.warning("HAProxy for %s:%d does not answer (%s): starting a new one",
                                    host, port, exc)
                self._stop(existing)  # dead or hung: start it again below
                del self._endpoints[name]
            if port == 0:
                raise ProxyError("a HAProxy forwarder needs a fixed port")
            if self._rundir is None:
                raise ProxyError("the HAProxy forwarders are not started (call start() first)")
            endpoint = _Endpoint(name, host, port, self._workdir, self._rundir)
            endpoint.front = front
            self._launch(endpoint, target)
            self._endpoints[name] = endpoint

    def set_target(self, name: str, target: tuple[str, int] | None, *, drop_existing: bool = False) -> None:
        """Send new connections to `target` (None: refuse them); with drop_existing, also close
        the connections already open (a failed-over primary that is still alive keeps none)."""
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ProxyError(f"no proxy endpoint named {name!r}")
            self._point(endpoint, target, drop_existing=drop_existing)

    def remove(self, name: str) -> None:
        with self._lock:
            endpoint = self._endpoints.pop(name, None)
            if endpoint is not None:
                self._stop(endpoint)

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._endpoints

    def address(self, name: str) -> tuple[str, int]:
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ProxyError(f"no proxy endpoint named {name!r}")
            return endpoint.host, endpoint.port

    def pid(self, name: str) -> int | None:
        with self._lock:
            endpoint = self._endpoints.get(name)
            return endpoint.proc.pid if endpoint is not None and endpoint.proc is not None else None

    def command(self, name: str, text: str) -> str:
        """One request on the forwarder's runtime socket (`show sess`, ...), its answer."""
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ProxyError(f"no proxy endpoint named {name!r}")
            return self._command(endpoint, text)

    def target(self, name: str) -> tuple[str, int] | None:
        """Where the running HAProxy sends new connections, read from its runtime API."""
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ProxyError(f"no proxy endpoint named {name!r}")
            return self._state(endpoint).target

    # -- internals (lock held) -----------------------------------------------------------------

    def _launch(self, endpoint: _Endpoint, target: tuple[str, int] | None) -> None:
        write_private(endpoint.config_path, render_config(
            host=endpoint.host, port=endpoint.port, target=target, socket_path=endpoint.socket_path,
            front=endpoint.front))
        with contextlib.suppress(FileNotFoundError):
            endpoint.socket_path.unlink()
        with open_private(endpoint.log_path, "wb") as log_file:
            # -db: stay in the foreground, a child we can watch and stop. Its own session, so a
            # Ctrl-C meant for the service does not reach it before the service stops it.
            endpoint.proc = subprocess.Popen(
                [self._binary, "-db", "-f", str(endpoint.config_path)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                umask=PRIVATE_UMASK)
        # Ours, not HAProxy's `pidfile` (written only when it daemonizes): a successor service
        # finds the process here if this one dies without stopping it.
        write_private(endpoint.pid_path, f"{endpoint.proc.pid}\n")
        deadline = time.monotonic() + self._start_timeout
        while True:
            code = endpoint.proc.poll()
            if code is not None:
                detail = _tail(endpoint.log_path)
                endpoint.proc = None
                self._stop(endpoint)  # its files
                raise BindError(f"cannot listen on {endpoint.host}:{endpoint.port}: HAProxy exited "
                                f"({code}): {detail}")
            if endpoint.socket_path.exists():
                try:
                    state = self._state(endpoint)
                except (OSError, ProxyError):
                    state = None
                if state is not None:
                    endpoint.target = state.target
                    log.info("haproxy endpoint %s:%d -> %s (pid %d)", endpoint.host, endpoint.port,
                             _fmt(target), endpoint.proc.pid)
                    return
            if time.monotonic() > deadline:
                self._stop(endpoint)
                raise ProxyError(f"HAProxy for {endpoint.host}:{endpoint.port} did not answer within "
                                 f"{self._start_timeout:.0f} s: {_tail(endpoint.log_path)}")
            time.sleep(0.005)

    def _point(self, endpoint: _Endpoint, target: tuple[str, int] | None, *, drop_existing: bool) -> None:
        if target == endpoint.target and not drop_existing:
            return
        # Maintenance first: no new connection reaches the old target while the old ones close.
        commands = [f"set server {SERVER} state maint"]
        if drop_existing:
            commands.append(f"shutdown sessions server {SERVER}")
        if target is not None:
            commands.append(f"set server {SERVER} addr {target[0]} port {target[1]}")
            commands.append(f"set server {SERVER} state ready")
        self._command(endpoint, "; ".join(commands))
        state = self._state(endpoint)
        if state.target != target:
            raise ProxyError(f"HAProxy for {endpoint.host}:{endpoint.port} points at {_fmt(state.target)} "
                             f"after being told {_fmt(target)}")
        endpoint.target = target

    def _state(self, endpoint: _Endpoint) -> ServerState:
        return parse_servers_state(self._command(endpoint, f"show servers state {BACKEND}"))

    def _command(self, endpoint: _Endpoint, command: str) -> str:
        """One request on the admin socket: HAProxy answers and closes (non-interactive mode)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self._call_timeout)
            try:
                sock.connect(str(endpoint.socket_path))
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as exc:
                raise ProxyError(f"HAProxy for {endpoint.host}:{endpoint.port} did not take "
                                 f"{command!r}: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def _stop(self, endpoint: _Endpoint) -> None:
        proc, endpoint.proc = endpoint.proc, None
        if proc is not None and proc.poll() is None:
            # SIGTERM is HAProxy's hard stop: listeners and connections close at once.
            proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2.0)
        for path in (endpoint.socket_path, endpoint.pid_path, endpoint.config_path, endpoint.log_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _stop_leftovers(self) -> None:
        """A service killed without closing leaves its HAProxies holding the endpoint addresses;
        their pid files say which to stop."""
        for pid_path in self._workdir.glob("*.pid"):
            try:
                pid = int(pid_path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = 0
            # Only a HAProxy running this very configuration: a reused pid is somebody else's.
            if pid > 0 and _runs(pid, str(pid_path.with_suffix(".cfg"))):
                log.info("stopping a HAProxy left by an earlier run (pid %d)", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid)
            with contextlib.suppress(FileNotFoundError):
                pid_path.unlink()


def _runs(pid: int, config: str) -> bool:
    """Whether process `pid` is a HAProxy started with `config`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return False  # no such process
        # No /proc (macOS): ask ps what that pid runs.
        try:
            out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, timeout=5.0)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return b"haproxy" in out.stdout and config.encode() in out.stdout
    except OSError:
        return False
    return b"haproxy" in cmdline and config.encode() in cmdline.split(b"\0")


def _wait_gone(pid: int, timeout: float = 2.0) -> None:
    """Until a killed process no longer holds its sockets: gone, or a zombie nobody reaped yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            if Path("/proc/self").exists():
                return
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        except OSError:
            return
        else:
            if stat.rpartition(")")[2].split()[:1] == ["Z"]:
                return
        time.sleep(0.005)


def _tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no output)"
    return text[-limit:] or "(no output)"


def _fmt(target: tuple[str, int] | None) -> str:
    return "nothing" if target is None else f"{target[0]}:{target[1]}"
