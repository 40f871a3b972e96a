"""keyroute: one endpoint in front of a Redis Cluster, for clients without cluster awareness.

The data path is C (keyroute.c, built here once per source version with the system's C compiler
and OpenSSL): a Python relay costs more per request than the node serving it, and the endpoint
has to stay within a fifth of direct access. This module builds it, writes its command table
and runs one process per endpoint.

The command table is made from the node's own `COMMAND` reply (its key specs), so where each
command's first key is comes from the engine that will run it, not from a list of ours. What
cannot share a connection with other clients (transactions, blocking reads, subscriptions) is
marked `stateful` and refused by the proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.access import Reach
from engine.adapters.redis import RespReply, execute
from engine.files import private_dir, write_private
from engine.proxy.tcp import ProxyError

__all__ = ["KeyRoute", "KeyRouteConfig", "KeyRoutes", "build_keyroute", "command_table"]

log = logging.getLogger(__name__)

SOURCE = "keyroute.c"
START_TIMEOUT = 10.0
# Commands that hold state on the connection that runs them: on a connection shared by every
# client they would leak into the others (a MULTI queues their commands, a BLPOP stalls them).
STATEFUL = frozenset({
    "multi", "exec", "discard", "watch", "unwatch", "reset", "monitor", "wait", "waitaof",
    "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
})
# Answered by the proxy itself (keyroute.c answer_locally): listed so the table knows them.
LOCAL = frozenset({"ping", "quit", "select", "readonly", "readwrite", "cluster", "hello", "client", "auth"})


def build_keyroute(cache_dir: Path, compiler: str | None = None) -> Path:
    """The keyroute binary for this source, compiled into `cache_dir` when not there yet.
    Raises ProxyError naming what to install when there is no compiler or no OpenSSL headers."""
    source = resources.files("engine.proxy").joinpath(SOURCE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    binary = private_dir(cache_dir) / f"keyroute-{digest}"
    if binary.exists():
        return binary
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ProxyError("building keyroute needs a C compiler: install gcc and libssl-dev "
                         "(apt-get install gcc libssl-dev)")
    src = cache_dir / f"keyroute-{digest}.c"
    write_private(src, source)
    partial = binary.with_suffix(".tmp")
    result = subprocess.run([cc, "-O2", "-o", str(partial), str(src), "-lssl", "-lcrypto"],
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        hint = " (install libssl-dev)" if "openssl/" in result.stderr else ""
        raise ProxyError(f"building keyroute failed{hint}: {result.stderr.strip()[-600:]}")
    partial.replace(binary)
    return binary


def _pairs(items: RespReply) -> dict[str, RespReply]:
    """A RESP2 flat map (`k1 v1 k2 v2 ...`) as a dict."""
    if not isinstance(items, list):
        return {}
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _text(value: RespReply) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_spec(specs: RespReply) -> str | None:
    """The table entry (after the name) for a command's first key spec; None: it has none."""
    if not isinstance(specs, list) or not specs:
        return None
    spec = _pairs(specs[0])
    begin, find = _pairs(spec.get("begin_search")), _pairs(spec.get("find_keys"))
    begin_spec, find_spec = _pairs(begin.get("spec")), _pairs(find.get("spec"))
    kind = _text(begin.get("type"))
    if kind == "index":
        where = f"index {_text(begin_spec.get('index'))}"
    elif kind == "keyword":
        where = f"keyword {_text(begin_spec.get('keyword'))} {_text(begin_spec.get('startfrom'))}"
    else:
        return None
    if _text(find.get("type")) == "keynum":
        return f"{where} keynum {_text(find_spec.get('keynumidx'))} {_text(find_spec.get('firstkey'))}"
    return f"{where} range"


def _entries(info: RespReply, prefix: str = "") -> Iterator[str]:
    if not isinstance(info, list) or len(info) < 3:
        return
    name = prefix + _text(info[0]).lower()
    flags = {_text(f) for f in info[2]} if isinstance(info[2], list) else set()
    subcommands = info[9] if len(info) > 9 else None
    if name in LOCAL:
        yield f"{name} local"
    elif name in STATEFUL or ("blocking" in flags and name not in ("xread", "xreadgroup")):
        # XREAD blocks only with BLOCK, which the proxy refuses by itself
        yield f"{name} stateful"
    elif isinstance(subcommands, list) and subcommands:
        yield f"{name} container"
        for sub in subcommands:
            # subcommands are named `parent|sub` already
            yield from _entries(sub)
    else:
        spec = _first_spec(info[8] if len(info) > 8 else None)
        yield f"{name} {spec}" if spec is not None else f"{name} none"


def command_table(commands: RespReply) -> str:
    """The proxy's command table from a node's `COMMAND` reply (redis/valkey 7+)."""
    if not isinstance(commands, list):
        raise ProxyError("COMMAND gave no command list")
    lines = [line for info in commands for line in _entries(info)]
    return "\n".join(sorted(lines)) + "\n"


@dataclass(frozen=True)
class KeyRouteConfig:
    """One endpoint: where it listens (`readers`: addresses that send reads to replicas), the
    cluster nodes it may start from, TLS files for clients, and who it is on the nodes (for the
    slot map; and for clients' commands unless `client_logins`)."""

    listen: Sequence[tuple[str, int]]
    seeds: Sequence[tuple[str, int]]
    readers: Sequence[tuple[str, int]] = ()
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    # Clients log in (a user group): their commands go over connections logged in as they are, so
    # the nodes' ACLs judge them; connections of clients not logged in carry no login of ours.
    client_logins: bool = False


class KeyRoute:
    """One keyroute process. `start` returns once it listens and knows the slot map."""

    def __init__(self, binary: Path, workdir: Path, config: KeyRouteConfig) -> None:
        self._binary = binary
        self._workdir = private_dir(workdir)
        self._config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._ecpu: int | None = None

    @property
    def _pid_file(self) -> Path:
        # A keyroute outlives a service that was killed (its own session): the next start stops it.
        return self._workdir / "keyroute.pid"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        cfg = self._config
        seed = cfg.seeds[0]
        reach = Reach(seed[0], seed[1], username=cfg.username, password=cfg.password)
        table = self._workdir / "commands"
        write_private(table, command_table(execute(reach, "COMMAND", timeout=5.0)))
        write_private(self._ecpu_file, str(self._ecpu or 0))
        args = [str(self._binary), "--commands", str(table), "--ecpu-file", str(self._ecpu_file)]
        for host, port in cfg.seeds:
            args += ["--seed", f"{host}:{port}"]
        args += [a for host, port in cfg.listen for a in ("--listen", f"{host}:{port}")]
        args += [a for host, port in cfg.readers for a in ("--listen", f"{host}:{port}/reader")]
        if cfg.client_logins:
            args += ["--client-logins", "yes"]
        if cfg.cert_file is not None and cfg.key_file is not None:
            args += ["--cert", str(cfg.cert_file), "--key", str(cfg.key_file)]
        env = dict(os.environ)
        env.pop("KEYROUTE_PASSWORD", None)
        if cfg.username is not None and cfg.password is not None:
            args += ["--backend-user", cfg.username]
            env["KEYROUTE_PASSWORD"] = cfg.password  # not in argv: `ps` shows argv to everyone
        log_file = (self._workdir / "keyroute.log").open("ab")
        with self._lock, log_file:
            _stop_leftover(self._pid_file)
            self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, env=env,
                                          start_new_session=True)
            write_private(self._pid_file, str(self._proc.pid))
            assert self._proc.stdout is not None
            line = _read_line(self._proc.stdout, START_TIMEOUT)
            if line != b"ready\n":
                self._kill()
                raise ProxyError(f"keyroute did not start: {self.log_tail()}")

    @property
    def _ecpu_file(self) -> Path:
        return self._workdir / "ecpu"

    def limit(self, ecpu_per_second: int | None) -> None:
        """Throttle past `ecpu_per_second` (None: no limit), from now on, connections kept."""
        if ecpu_per_second == self._ecpu:
            return
        self._ecpu = ecpu_per_second
        write_private(self._ecpu_file, str(ecpu_per_second or 0))
        self.refresh()

    def refresh(self) -> None:
        """Read the slot map again now (after a failover or resharding the control plane made)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        with self._lock:
            self._kill()

    def log_tail(self, limit: int = 800) -> str:
        with contextlib.suppress(OSError):
            return (self._workdir / "keyroute.log").read_text(errors="replace")[-limit:]
        return ""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        with contextlib.suppress(OSError):
            self._pid_file.unlink()
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2.0)
        if proc.stdout is not None:
            proc.stdout.close()


def _stop_leftover(pid_file: Path) -> None:
    """Stop the keyroute a pid file names, if that process still runs and is a keyroute."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"keyroute" not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # it holds nothing worth a graceful stop
    for _ in range(200):  # bounded: at most 2 s for the kernel to free its ports
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.01)


def _read_line(stream: object, timeout: float) -> bytes:
    """The first line a child writes, or b"" when it writes none within `timeout`."""
    result: list[bytes] = []

    def read() -> None:
        result.append(stream.readline())  # type: ignore[attr-defined]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else b""


class KeyRoutes:
    """Every keyroute of the service by name: started (or restarted when its configuration
    changed), stopped, all stopped at close. The binary is built on first use. Thread safe."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[KeyRouteConfig, KeyRoute]] = {}
        self._binary: Path | None = None

    def ensure(self, name: str, config: KeyRouteConfig) -> None:
        """keyroute `name` runs with `config`; raises ProxyError when it cannot."""
        with self._lock:
            found = self._routes.get(name)
            if found is not None and found[0] == config and found[1].pid is not None:
                return
            if found is not None:
                found[1].stop()
            if self._binary is None:
                self._binary = build_keyroute(self._workdir / "bin")
            route = KeyRoute(self._binary, self._workdir / name, config)
            route.start()
            self._routes[name] = (config, route)

    def refresh(self, name: str) -> None:
        with self._lock:
            found = self._routes.get(name)
        if found is not None:
            found[1].refresh()

    def limit(self, name: str, ecpu_per_second: int | None) -> None:
        with self._lock:
            found = self._routes.get(name)
        if found is not None:
            found[1].limit(ecpu_per_second)

    def stop(self, name: str) -> None:
        with self._lock:
            found = self._routes.pop(name, None)
        if found is not None:
            found[1].stop()

    def close(self) -> None:
        with self._lock:
            routes, self._routes = list(self._routes.values()), {}
        for _, route in routes:
            route.stop()
