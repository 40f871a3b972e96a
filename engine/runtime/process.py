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

Readiness is reported, not only polled: on Linux redis/valkey nodes run with `supervised systemd`
and NOTIFY_SOCKET set to one abstract datagram socket of the runtime, so a node sends READY=1 the
moment it serves (after loading its data) and `wait_ready` returns then; once a binary has been
seen reporting, its starting nodes are not polled at all. The kernel stamps every message with the
sender's pid (SO_PASSCRED), which names the node. One thread reads the socket all the time: a node
blocks in sd_notify() while the socket's queue (10 datagrams) is full, and nodes also send STATUS=
lines (loading, replication in some versions) and STOPPING=1. After a control plane restart nothing
listens at that address any more; a node stopped later then logs one harmless "systemd supervision
error" line.

A removed node's directory is renamed into `<data_dir>/.trash/` (instant) and deleted there by a
background thread, so a delete does not wait for the file system; leftovers of a crash are
deleted by the next runtime.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.adapters import adapter_for
from engine.adapters.base import LOG_FILE, PID_FILE
from engine.addresses import bind_error
from engine.runtime.base import (
    PROBE_PAUSE,
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
_TRASH = ".trash"  # removed node directories on their way out (never a node name: see _NAME_RE)


@dataclass
class _Watch:
    pid: int
    thread: threading.Thread
    done: threading.Event
    claimed: bool = False  # the exit was handled (by the watcher, or by kill()/stop() that saw it)


@dataclass
class _Node:
    name: str
    dir: Path
    config: NodeConfig
    binary: str
    marker: str
    proc: subprocess.Popen[bytes] | None = None
    watch: _Watch | None = field(default=None)
    # Set when the node reported READY=1 or exited; `ready_told` once wait_ready said so.
    ready: threading.Event = field(default_factory=threading.Event)
    ready_told: bool = False
    reports: bool = False  # started by this runtime with a NOTIFY_SOCKET


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
        self._notify: socket.socket | None = _notify_socket()
        self._notify_thread: threading.Thread | None = None
        self._by_pid: dict[int, _Node] = {}  # nodes started here that may report, by pid
        self._early_ready: set[int] = set()  # READY=1 from a pid not registered yet
        self._reporting: set[str] = set()  # binaries seen sending READY=1 (others may lack systemd support)
        self._trash_queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._trash_thread: threading.Thread | None = None
        trash = self._dir / _TRASH
        if trash.is_dir():
            for leftover in trash.iterdir():  # a crash between rename and deletion
                self._trash_later(leftover)

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
            node_dir = self._dir / name
            try:
                # The name is free at once; the files go in the background.
                trash = self._dir / _TRASH / f"{name}.{uuid.uuid4().hex[:12]}"
                trash.parent.mkdir(exist_ok=True)
                os.rename(node_dir, trash)
                self._trash_later(trash)
            except FileNotFoundError:
                pass  # nothing on disk (never started, or removed before)
            except OSError:
                shutil.rmtree(node_dir, ignore_errors=True)
            with self._lock:
                self._nodes.pop(name, None)
            if node_dir.exists():
                raise RuntimeError_(f"could not delete {node_dir}")

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

    def wait_ready(self, name: str, timeout: float) -> bool:
        with self._lock:
            node = self._nodes.get(name)
            will_report = node is not None and node.reports and node.binary in self._reporting
        if node is None or node.ready_told:
            time.sleep(min(timeout, PROBE_PAUSE))
            return False
        # Until its binary has been seen reporting (a build without systemd support never
        # does), a node is probed at the pause's pace; its report still ends the pause early.
        if node.ready.wait(timeout if will_report else min(timeout, PROBE_PAUSE)):
            node.ready_told = True
            return True
        return False

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
            if self._notify_thread is not None:
                threads.append(self._notify_thread)
        for thread in threads:
            thread.join(timeout=2.0)
        if not any(t.is_alive() for t in threads):
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self._notify is not None:
                self._notify.close()
        with self._lock:
            children = [n.proc for n in self._nodes.values() if n.proc is not None]
        if self._trash_thread is not None:
            self._trash_queue.put(None)
            self._trash_thread.join(timeout=30.0)
        with contextlib.suppress(OSError):
            (self._dir / _TRASH).rmdir()  # only when empty (another runtime may still be deleting)
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
            launch = adapter_for(config.engine).launch(config, binary, node_dir, run_as_root=self._as_root,
                                                       notify=self._notify is not None)
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
        env = None
        if launch.notify and self._notify is not None:
            env = {**os.environ, "NOTIFY_SOCKET": _notify_address(self._notify)}
            self._read_notifications()
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
                    env=env,
                )
        except OSError as exc:
            raise RuntimeError_(f"cannot run {binary}: {exc.strerror or exc}", temporary=False) from exc
        with self._lock:
            node.proc = proc
            if env is not None:
                node.reports = True
                self._by_pid[proc.pid] = node
                if proc.pid in self._early_ready:  # it was quicker than this thread
                    self._early_ready.discard(proc.pid)
                    node.ready.set()
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

    # --- removal ---

    def _trash_later(self, path: Path) -> None:
        """Delete `path` (already renamed out of the way) on the removal thread."""
        with self._lock:
            if self._trash_thread is None:
                self._trash_thread = threading.Thread(target=self._empty_trash, name="node-dir-removal", daemon=True)
                self._trash_thread.start()
        self._trash_queue.put(path)

    def _empty_trash(self) -> None:
        while (path := self._trash_queue.get()) is not None:
            shutil.rmtree(path, ignore_errors=True)

    # --- readiness reports ---

    def _read_notifications(self) -> None:
        """Start the thread that reads the nodes' sd_notify messages (once)."""
        with self._lock:
            if self._notify_thread is not None or self._closing.is_set():
                return
            self._notify_thread = threading.Thread(target=self._notifications, name="node-ready", daemon=True)
            self._notify_thread.start()

    def _notifications(self) -> None:
        sock = self._notify
        assert sock is not None
        while not self._closing.is_set():
            try:
                readable = _readable([sock.fileno(), self._wake_r], None)
                if sock.fileno() not in readable:
                    continue  # the wake-up pipe: closing
                message, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                if self._closing.is_set():
                    return
                # Keep reading: nodes block in sd_notify() once nobody drains the queue.
                log.exception("reading node readiness reports failed")
                time.sleep(0.1)
                continue
            pid = _sender_pid(ancillary)
            if pid is None or b"READY=1" not in message.split(b"\n"):
                continue  # STATUS=..., STOPPING=1: nothing to act on
            with self._lock:
                node = self._by_pid.get(pid)
                if node is None:
                    if len(self._early_ready) > 1000:  # senders we never started: forget them
                        self._early_ready.clear()
                    self._early_ready.add(pid)
                else:
                    self._reporting.add(node.binary)
            if node is not None:
                node.ready.set()

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
            self._exited(node, pid)
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
        child = proc is not None and proc.pid == pid
        if child and self._pidfd:
            # Woken by the exit itself: Popen.wait(timeout) polls with sleeps of 1, 2, 4... ms.
            assert proc is not None
            if proc.returncode is not None:
                return True
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:  # already reaped by its watcher
                proc.wait()
                return True
            try:
                exited = proc.returncode is not None or bool(_readable([pidfd], timeout))
            finally:
                os.close(pidfd)
            if exited:
                proc.wait()
            return exited
        if child:
            assert proc is not None
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
                ready = _readable([pidfd], timeout)
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
        """kill()/stop() saw the (reaped) exit: return only once the exit listener has run, so a
        start() that follows cannot be mistaken for this exit. Whoever sees the exit first, this
        thread or the node's watcher, handles it, so neither waits for a switch to the other."""
        with self._lock:
            watch = node.watch
            watched = watch is not None and watch.pid == pid
        if watched and self._exited(node, pid):
            return
        _remove_pid_file(node.dir / PID_FILE, pid)
        # The watcher has it: wait for its listener (unless we are that listener calling back).
        if watch is not None and watched and watch.thread is not threading.current_thread():
            watch.done.wait(timeout=2.0)

    def _exited(self, node: _Node, pid: int) -> bool:
        """A watched exit, handled once: clean up and tell the listener. False if another
        thread has handled it already."""
        with self._lock:
            watch = node.watch
            if watch is not None and watch.pid == pid:
                if watch.claimed:
                    return False
                watch.claimed = True
            if self._by_pid.get(pid) is node:
                del self._by_pid[pid]
        node.ready.set()  # news for wait_ready(): it exited
        _remove_pid_file(node.dir / PID_FILE, pid)
        listener = self._listener
        if listener is not None and not self._closing.is_set():
            try:
                listener(node.name)
            except Exception:
                log.exception("exit listener failed for node %s", node.name)
        return True


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


_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


def _readable(fds: list[int], timeout: float | None) -> set[int]:
    """The readable ones of `fds`, waiting up to `timeout` seconds (None: for ever). poll(), not
    select(): a service with many connections has descriptors above select's 1024."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    events = poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
    return {fd for fd, _ in events}


def _notify_socket() -> socket.socket | None:
    """The runtime's sd_notify socket: an abstract address (Linux; nothing on disk) with a
    128-bit random name, so no later socket of anyone takes it over for nodes that outlive us
    (one that never reads would block them in sd_notify); each message carries its sender's
    credentials. None where that is missing."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_PASSCRED"):
        return None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    except OSError:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(f"\0elasticache-local/ready/{uuid.uuid4().hex}")
    except OSError:
        sock.close()
        return None
    return sock


def _notify_address(sock: socket.socket) -> str:
    """NOTIFY_SOCKET's spelling of an abstract address: '@' for the leading NUL."""
    name = sock.getsockname()
    raw = name if isinstance(name, bytes) else name.encode()
    return "@" + raw[1:].decode("ascii")


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid: int = _UCRED.unpack_from(data)[0]
            return pid
    return None
