"""NodeRuntime on local processes: redis-server / valkey-server / memcached children.

Layout: every node lives in `<data_dir>/<name>/` with
  node.json  the NodeConfig, the binary and the process marker (so a new runtime finds the node)
  node.conf  the redis/valkey config file (rewritten at every start)
  node.pid   the node's pid (written by the runtime right after the fork, and by the engine)
  node.log   the engine's log, stdout and stderr
  dump.rdb   redis/valkey data

Nodes run in their own session (`start_new_session`): a Ctrl-C of the control plane does not
reach them, and they keep running when the control plane stops; the next control plane re-adopts
them from node.json + node.pid. A pid is only trusted when the process's command line still
names the node's binary and its config/pid file, since pids get reused.

Exits are noticed at once, without polling, by one watcher thread per running node blocked on a
pidfd (Linux >= 5.3) together with a wake-up pipe that `close()` uses; for our own children the
watcher then reaps them with `Popen.wait()`. Without pidfd (macOS) watchers poll every 200 ms.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.adapters import adapter_for
from engine.adapters.base import LOG_FILE, PID_FILE
from engine.addresses import bind_error
from engine.runtime.base import (
    ExitListener,
    NodeConfig,
    NodeInfo,
    NodeState,
    ProbeResult,
    RuntimeError_,
    config_from_dict,
    config_to_dict,
)
from engine.runtime.commands import TcpNodeCommands
from engine.versions import Binary

__all__ = ["NODE_FILE", "ProcessRuntime"]

log = logging.getLogger(__name__)

NODE_FILE = "node.json"
_FORMAT = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HAS_PROC = os.path.exists("/proc/self/stat")
_POLL_INTERVAL = 0.2  # watchers without pidfd
_KILL_WAIT = 5.0  # how long a SIGKILLed process may take to go


@dataclass
class _Watch:
    pid: int
    thread: threading.Thread
    done: threading.Event


@dataclass
class _Node:
    name: str
    dir: Path
    config: NodeConfig
    binary: str
    marker: str
    proc: subprocess.Popen[bytes] | None = None
    watch: _Watch | None = field(default=None)


class ProcessRuntime(TcpNodeCommands):
    """NodeRuntime running nodes as local processes. All methods are thread-safe; operations on
    one node are serialized, operations on different nodes run in parallel.

    `start_grace` (seconds, default 0: start() never waits) lets start() wait that long for an
    immediate exit (a bad setting makes redis-server exit within ~6 ms) and report it with the
    tail of the node's log; a port already taken is caught without waiting, before the fork.
    """

    name = "process"

    def __init__(
        self,
        data_dir: Path,
        binaries: Mapping[str, Sequence[Binary]],
        *,
        start_grace: float = 0.0,
    ) -> None:
        self._dir = Path(data_dir).resolve()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._binaries = {engine: tuple(found) for engine, found in binaries.items()}
        self._start_grace = start_grace
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self._nodes: dict[str, _Node] = {}
        self._node_locks: dict[str, threading.RLock] = {}
        self._lock = threading.Lock()  # guards the two dicts above and node.watch/node.proc
        self._listener: ExitListener | None = None
        self._closing = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._pidfd = _pidfd_works()

    # --- NodeRuntime ---

    def available_versions(self) -> Mapping[str, tuple[str, ...]]:
        return {
            engine: tuple(dict.fromkeys(b.version for b in found)) for engine, found in self._binaries.items() if found
        }

    def start(self, config: NodeConfig) -> NodeInfo:
        if not _NAME_RE.match(config.name):
            raise RuntimeError_(f"invalid node name {config.name!r}", temporary=False)
        with self._node_lock(config.name):
            node = self._get(config.name)
            if node is not None:
                pid = self._live_pid(node)
                if pid is not None:
                    self._ensure_watch(node, pid)
                    return self._info(node, pid)
            return self._spawn(config)

    def stop(self, name: str, timeout: float = 5.0) -> None:
        with self._node_lock(name):
            node = self._get(name)
            pid = self._live_pid(node) if node else None
            if node is None or pid is None:
                return
            _signal(pid, signal.SIGTERM, group=False)
            _signal(pid, signal.SIGCONT, group=True)  # a paused node handles SIGTERM once resumed
            if not self._wait_exit(pid, node.proc, timeout):
                log.warning("node %s (pid %d) ignored SIGTERM for %.1f s; killing it", name, pid, timeout)
                _signal(pid, signal.SIGKILL, group=True)
                if not self._wait_exit(pid, node.proc, _KILL_WAIT):
                    raise RuntimeError_(f"node {name} (pid {pid}) did not exit after SIGKILL")
            self._after_exit(node, pid)

    def kill(self, name: str) -> None:
        """SIGKILL to the node's process group (a redis fork child included); returns once the
        process is gone, so its addresses are free, and the exit listener has been called."""
        with self._node_lock(name):
            node = self._get(name)
            pid = self._live_pid(node) if node else None
            if node is None or pid is None:
                return
            _signal(pid, signal.SIGKILL, group=True)
            if not self._wait_exit(pid, node.proc, _KILL_WAIT):
                raise RuntimeError_(f"node {name} (pid {pid}) did not exit after SIGKILL")
            self._after_exit(node, pid)

    def pause(self, name: str) -> None:
        """SIGSTOP to the node's process group; returns once the node is stopped."""
        self._signal_running(name, signal.SIGSTOP, paused=True)

    def resume(self, name: str) -> None:
        self._signal_running(name, signal.SIGCONT, paused=False)

    def remove(self, name: str) -> None:
        if not _NAME_RE.match(name):
            return
        with self._node_lock(name):
            self.stop(name)
            shutil.rmtree(self._dir / name, ignore_errors=True)
            with self._lock:
                self._nodes.pop(name, None)
            if (self._dir / name).exists():
                raise RuntimeError_(f"could not delete {self._dir / name}")

    def inspect(self, name: str) -> NodeInfo | None:
        node = self._get(name)
        if node is None:
            return None
        pid = self._live_pid(node)
        if pid is not None:
            self._ensure_watch(node, pid)  # adopts nodes of a previous control plane
        return self._info(node, pid)

    def list_managed(self) -> list[NodeInfo]:
        infos = []
        for entry in sorted(self._dir.iterdir()):
            if (entry / NODE_FILE).is_file():
                info = self.inspect(entry.name)
                if info is not None:
                    infos.append(info)
        return infos

    def probe(self, name: str, timeout: float) -> ProbeResult:
        node = self._get(name)
        if node is None:
            return ProbeResult(False, None, None, f"no node named {name}", 0.0)
        config = node.config
        try:
            adapter = adapter_for(config.engine)
            password = config.settings.get("requirepass") or None
            return adapter.probe(config.host, config.port, timeout, password=password)
        except Exception as exc:  # never raises, by contract
            return ProbeResult(False, None, None, f"probe failed: {exc}", 0.0)

    def set_exit_listener(self, listener: ExitListener) -> None:
        self._listener = listener

    def close(self) -> None:
        """Stop the watcher threads. Nodes keep running; a new runtime re-adopts them."""
        if self._closing.is_set():
            return
        self._closing.set()
        os.write(self._wake_w, b"x")  # never read: every watcher's poll() sees it
        with self._lock:
            threads = [n.watch.thread for n in self._nodes.values() if n.watch is not None]
        for thread in threads:
            thread.join(timeout=2.0)
        if not any(t.is_alive() for t in threads):
            os.close(self._wake_r)
            os.close(self._wake_w)
        with self._lock:
            children = [n.proc for n in self._nodes.values() if n.proc is not None]
        for proc in children:
            if proc.returncode is None:
                # Running on is intended, not a leak: without this, Popen.__del__ warns
                # "subprocess ... is still running". A later runtime re-adopts and reaps it.
                setattr(proc, "_child_created", False)  # noqa: B010

    # --- extras (not in the protocol) ---

    @property
    def data_dir(self) -> Path:
        return self._dir

    def node_dir(self, name: str) -> Path:
        return self._dir / name

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of the node's log (why it exited, typically)."""
        return _tail(self._dir / name / LOG_FILE, lines)

    # --- starting ---

    def _spawn(self, config: NodeConfig) -> NodeInfo:
        binary = self._binary_for(config)
        node_dir = self._dir / config.name
        try:
            launch = adapter_for(config.engine).launch(config, binary, node_dir, run_as_root=self._as_root)
        except ValueError as exc:
            raise RuntimeError_(f"cannot start node {config.name}: {exc}", temporary=False) from exc
        node_dir.mkdir(parents=True, exist_ok=True)
        for file_name, text in launch.files.items():
            _write_atomic(node_dir / file_name, text)
        _write_atomic(
            node_dir / NODE_FILE,
            json.dumps(
                {
                    "format": _FORMAT,
                    "binary": binary,
                    "marker": launch.marker,
                    "config": config_to_dict(config),
                },
                indent=2,
            ),
        )
        node = _Node(config.name, node_dir, config, binary, launch.marker)
        with self._lock:
            self._nodes[config.name] = node

        # A taken address is the common failure; see it before forking, without waiting.
        error = bind_error(config.host, config.port)
        if error is not None:
            raise _address_error(config, error)

        log_path = node_dir / LOG_FILE
        try:
            with open(log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    list(launch.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=node_dir,
                    start_new_session=True,  # Ctrl-C of the control plane must not reach nodes
                    close_fds=True,
                )
        except OSError as exc:
            raise RuntimeError_(f"cannot run {binary}: {exc.strerror or exc}", temporary=False) from exc
        with self._lock:
            node.proc = proc
        try:
            _write_atomic(node_dir / PID_FILE, f"{proc.pid}\n")
            exited = proc.poll() is not None
            if not exited and self._start_grace > 0:
                exited = self._wait_exit(proc.pid, proc, self._start_grace)
        except BaseException:
            _signal(proc.pid, signal.SIGKILL, group=True)  # no node we cannot account for
            proc.wait()
            raise
        if exited:
            code = proc.wait()
            _remove_pid_file(node_dir / PID_FILE, proc.pid)
            tail = _tail(log_path, 8)
            raise RuntimeError_(
                f"{config.engine} {config.version} node {config.name} exited at once (code {code}); "
                f"last lines of {log_path}:\n{tail}",
                temporary="Address already in use" in tail,
            )
        self._ensure_watch(node, proc.pid)
        return self._info(node, proc.pid)

    def _binary_for(self, config: NodeConfig) -> str:
        for binary in self._binaries.get(config.engine, ()):
            if binary.version == config.version:
                return str(binary.path)
        have = ", ".join(b.version for b in self._binaries.get(config.engine, ())) or "none"
        raise RuntimeError_(
            f"{config.engine} {config.version} is not installed here (installed: {have}); "
            "install it or ask for an installed version",
            temporary=False,
        )

    # --- node records ---

    def _node_lock(self, name: str) -> threading.RLock:
        with self._lock:
            lock = self._node_locks.get(name)
            if lock is None:
                lock = self._node_locks[name] = threading.RLock()
            return lock

    def _get(self, name: str) -> _Node | None:
        with self._lock:
            node = self._nodes.get(name)
        if node is not None or not _NAME_RE.match(name):
            return node
        path = self._dir / name / NODE_FILE
        try:
            data = json.loads(path.read_text())
            loaded = _Node(
                name=name,
                dir=self._dir / name,
                config=config_from_dict(data["config"]),
                binary=str(data["binary"]),
                marker=str(data["marker"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring node %s: unreadable %s (%s)", name, path, exc)
            return None
        with self._lock:
            return self._nodes.setdefault(name, loaded)

    def _info(self, node: _Node, pid: int | None) -> NodeInfo:
        if pid is None:
            state = NodeState.EXITED
        else:
            state = NodeState.PAUSED if _proc_state(pid) in ("T", "t") else NodeState.RUNNING
        c = node.config
        return NodeInfo(
            name=c.name,
            state=state,
            engine=c.engine,
            version=c.version,
            host=c.host,
            port=c.port,
            pid=pid,
            labels=dict(c.labels),
        )

    def _live_pid(self, node: _Node) -> int | None:
        """The pid of the node's running (or paused) process, or None."""
        proc = node.proc
        if proc is not None:
            # Our own child: Popen knows (and reaps it if it has just exited).
            return proc.pid if proc.poll() is None else None
        pid = _read_pid(node.dir / PID_FILE)
        if pid is not None and _is_node_process(pid, node):
            return pid
        return None

    def _signal_running(self, name: str, sig: signal.Signals, *, paused: bool) -> None:
        with self._node_lock(name):
            node = self._get(name)
            pid = self._live_pid(node) if node else None
            if pid is None:
                raise RuntimeError_(f"node {name} is not running", temporary=False)
            _signal(pid, sig, group=True)
            # Signals are delivered asynchronously: wait (about a millisecond) until the state
            # shows, so an inspect() right after pause() says PAUSED.
            deadline = time.monotonic() + 1.0
            while (_proc_state(pid) in ("T", "t")) != paused and time.monotonic() < deadline:
                if _proc_state(pid) in (None, "Z"):
                    break
                time.sleep(0.001)

    # --- exits ---

    def _ensure_watch(self, node: _Node, pid: int) -> None:
        with self._lock:
            if self._closing.is_set():
                return
            watch = node.watch
            if watch is not None and watch.pid == pid and not watch.done.is_set():
                return
            proc = node.proc if node.proc is not None and node.proc.pid == pid else None
        pidfd: int | None = None
        if self._pidfd:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return  # already gone; nothing to watch
            # The pidfd pins the pid: check it is still the node (not a reused pid) now.
            if proc is None and not _is_node_process(pid, node):
                os.close(pidfd)
                return
        done = threading.Event()
        thread = threading.Thread(
            target=self._watch,
            args=(node, pid, proc, pidfd, done),
            name=f"node-exit-{node.name}",
            daemon=True,
        )
        with self._lock:
            current = node.watch
            watched = current is not None and current.pid == pid and not current.done.is_set()
            if self._closing.is_set() or watched:
                if pidfd is not None:
                    os.close(pidfd)
                return
            node.watch = _Watch(pid, thread, done)
        thread.start()

    def _watch(
        self,
        node: _Node,
        pid: int,
        proc: subprocess.Popen[bytes] | None,
        pidfd: int | None,
        done: threading.Event,
    ) -> None:
        try:
            if not self._block_until_exit(pid, proc, pidfd):
                return  # the runtime is closing
            _reap(pid, proc)
            _remove_pid_file(node.dir / PID_FILE, pid)
            listener = self._listener
            if listener is not None and not self._closing.is_set():
                try:
                    listener(node.name)
                except Exception:
                    log.exception("exit listener failed for node %s", node.name)
        finally:
            if pidfd is not None:
                os.close(pidfd)
            done.set()

    def _block_until_exit(self, pid: int, proc: subprocess.Popen[bytes] | None, pidfd: int | None) -> bool:
        """True once the process has exited; False when the runtime closes first."""
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            while True:
                try:
                    events = poller.poll()
                except InterruptedError:  # pragma: no cover - retried by Python since 3.5
                    continue
                if any(fd == pidfd for fd, _ in events):
                    return True
                if self._closing.is_set():
                    return False
        while not self._closing.is_set():
            if proc is not None:
                try:
                    proc.wait(timeout=_POLL_INTERVAL)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not _pid_running(pid):
                return True
            self._closing.wait(_POLL_INTERVAL)
        return False

    def _wait_exit(self, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
        """Wait up to `timeout` for the process to exit (and reap it if it is ours)."""
        if proc is not None and proc.pid == pid:
            try:
                proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        if self._pidfd:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return True
            try:
                ready, _, _ = select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
            if ready:
                _reap(pid, None)
                return True
            return False
        deadline = time.monotonic() + timeout
        while _pid_running(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _after_exit(self, node: _Node, pid: int) -> None:
        _remove_pid_file(node.dir / PID_FILE, pid)
        with self._lock:
            watch = node.watch
        # Return only once the exit listener has run, so a start() that follows cannot be
        # mistaken for this exit (unless we are the watcher's own listener calling back).
        if watch is not None and watch.pid == pid and watch.thread is not threading.current_thread():
            watch.done.wait(timeout=2.0)


# --- helpers ---


def _write_atomic(path: Path, text: str) -> None:
    # A name of our own: memcached writes its pid file through "<pidfile>.tmp" too.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _remove_pid_file(path: Path, pid: int) -> None:
    if _read_pid(path) == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read()
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _address_error(config: NodeConfig, error: int) -> RuntimeError_:
    where = f"{config.host}:{config.port}"
    if error == errno.EADDRINUSE:
        return RuntimeError_(
            f"cannot start node {config.name}: {where} is already in use by another process", temporary=True
        )
    if error == errno.EADDRNOTAVAIL:
        return RuntimeError_(
            f"cannot start node {config.name}: {config.host} is not an address of this machine "
            "(macOS needs `sudo ifconfig lo0 alias <address>`; or use 'ports' node addressing)",
            temporary=False,
        )
    return RuntimeError_(f"cannot start node {config.name}: cannot listen on {where}: {os.strerror(error)}")


def _signal(pid: int, sig: signal.Signals, *, group: bool) -> None:
    """Signal the node, or its whole process group (nodes lead their own session, so the group
    also holds a redis fork child doing BGSAVE or a full sync)."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.wait()
        return
    # An adopted node may still be our child (same process, earlier runtime).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _pidfd_works() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:  # ENOSYS on kernels < 5.3, EPERM under some seccomp profiles
        return False
    os.close(fd)
    return True


def _ps(pid: int, column: str) -> str | None:
    try:
        out = subprocess.run(
            ["ps", "-o", f"{column}=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _proc_state(pid: int) -> str | None:
    """The one-letter process state (R, S, T, Z, ...), None if there is no such process."""
    if _HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return None
        end = stat.rfind(")")
        return stat[end + 2 : end + 3] or None
    out = _ps(pid, "stat")
    return out[:1] if out else None


def _pid_running(pid: int) -> bool:
    """Whether pid is a live (possibly stopped) process; zombies count as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False  # it was our child and has just been reaped
    except ChildProcessError:
        pass
    return _proc_state(pid) not in (None, "Z")


def _cmdline(pid: int) -> str | None:
    if _HAS_PROC:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return _ps(pid, "command")


def _is_node_process(pid: int, node: _Node) -> bool:
    """Whether pid is this node's process: its command line starts with the node's binary and
    names the node's config/pid file (redis-server shows it in its process title), or, for
    servers without that title, its working directory is the node's (redis chdirs to `dir`)."""
    if _proc_state(pid) in (None, "Z"):
        return False
    cmdline = _cmdline(pid)
    if not cmdline or not cmdline.startswith(node.binary):
        return False
    if node.marker in cmdline:
        return True
    if _HAS_PROC:
        try:
            return os.readlink(f"/proc/{pid}/cwd") == str(node.dir)
        except OSError:
            return False
    return False
