"""NodeRuntime on local processes: redis-server / valkey-server / memcached children.

Nodes run in their own session (`start_new_session`): a Ctrl-C of the control plane does not
reach them, and they keep running when the control plane stops; the next control plane re-adopts
them from node.json + node.pid (records.py). A pid is only trusted when the process's command line
still names the node's binary and its config/pid file, since pids get reused (pids.runs).

This class manages nodes; it is told of exits by the ExitWatcher (exits.py) and of readiness by
the ReadinessReports (readiness.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from engine.access import TlsContexts
from engine.adapters import adapter_for
from engine.adapters import memcached as memcached_adapter
from engine.adapters import redis as redis_adapter
from engine.adapters.base import LOG_FILE, PID_FILE
from engine.adapters.redis_probes import ProbeConnections
from engine.adapters.redis_security import front_socket
from engine.addresses import check_bindable
from engine.files import PRIVATE_UMASK, open_private, private_dir
from engine.runtime.base import (
    NODE_NAME,
    PROBE_PAUSE,
    ExitListener,
    IamVerify,
    NodeConfig,
    NodeInfo,
    NodeLocks,
    NodeState,
    ProbeResult,
    RuntimeError_,
    node_info,
    pause_for_probe,
    tell_exit,
    without_seed,
)
from engine.runtime.commands import TcpNodeCommands
from engine.runtime.frontends import Frontends, IamFront, free_ports, iam_front
from engine.runtime.process import pids
from engine.runtime.process.exits import ExitWatcher
from engine.runtime.process.readiness import ReadinessReports
from engine.runtime.process.records import (
    NODE_FILE,
    Node,
    Trash,
    load_node,
    place_files,
    read_pid,
    remove_pid_file,
    save_node,
    save_record,
    tail,
    write_atomic,
)
from engine.security import sasl_users
from engine.stats import StatsReader
from engine.versions import Binary, tls_capable

__all__ = ["ProcessRuntime"]

log = logging.getLogger(__name__)

_KILL_WAIT = 5.0  # how long a SIGKILLed process may take to go


class ProcessRuntime(TcpNodeCommands):
    """NodeRuntime running nodes as local processes. All methods are thread-safe; operations on
    one node are serialized, operations on different nodes run in parallel.

    `start_grace` (seconds, default 0: start() never waits) lets start() wait that long for an
    immediate exit (a bad setting makes redis-server exit within ~6 ms) and report it with the
    tail of the node's log; a port already taken is caught without waiting, before the fork.
    Without a grace, an immediate exit is reported as every exit is: to the exit listener.
    """

    name = "process"

    def __init__(
        self,
        data_dir: Path,
        binaries: Mapping[str, Sequence[Binary]],
        *,
        start_grace: float = 0.0,
    ) -> None:
        self._dir = private_dir(Path(data_dir).resolve())
        self._binaries = {engine: tuple(found) for engine, found in binaries.items()}
        self._start_grace = start_grace
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self._nodes: dict[str, Node] = {}
        self._lock = threading.Lock()  # guards _nodes and node.proc
        self._node_lock = NodeLocks()
        self._listener: ExitListener | None = None
        self._closing = pids.Closing()
        self._exits = ExitWatcher(self._exited, self._is_node, self._closing)
        self._ready = ReadinessReports(self._closing)
        self._trash = Trash(self._dir)
        self._stats = StatsReader()
        self._probes = ProbeConnections()
        self._tls = TlsContexts()
        self._tls_capable: dict[Path, bool] = {}
        # TLS mode preferred, IAM users: the fronts on the nodes' ports (HAProxy's files under _fronts).
        self._frontends = Frontends(self._dir / "_fronts")
        self._iam_verify: IamVerify | None = None

    # --- NodeRuntime ---

    def available_versions(self) -> Mapping[str, tuple[str, ...]]:
        return {
            engine: tuple(dict.fromkeys(b.version for b in found)) for engine, found in self._binaries.items() if found
        }

    def tls_modes(self, engine: str, version: str) -> tuple[str, ...]:
        for b in self._binaries.get(engine, ()):
            if b.version == version:
                if b.path not in self._tls_capable:  # reads the whole binary: once
                    self._tls_capable[b.path] = tls_capable(b.path)
                return ("preferred", "required") if self._tls_capable[b.path] else ()
        return ()

    def start(self, config: NodeConfig) -> NodeInfo:
        if not NODE_NAME.match(config.name):
            raise RuntimeError_(f"invalid node name {config.name!r}", temporary=False)
        with self._node_lock(config.name):
            node = self._get(config.name)
            if node is not None:
                pid = self._live_pid(node)
                if pid is not None:
                    self._adopt(node, pid)
                    return self._info(node, pid)
            return self._spawn(config)

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL after `timeout`; returns once the exit listener has been called."""

        def graceful(node: Node, pid: int) -> None:
            pids.signal_node(pid, signal.SIGTERM, group=False)
            pids.signal_node(pid, signal.SIGCONT, group=True)  # a paused node handles SIGTERM once resumed
            if not self._exits.wait_exit(pid, node.proc, timeout):
                log.warning("node %s (pid %d) ignored SIGTERM for %.1f s; killing it", name, pid, timeout)
                self._kill(node, pid)

        self._end(name, graceful)

    def kill(self, name: str) -> None:
        """SIGKILL to the node's process group (a redis fork child included); returns once the
        process is gone, so its addresses are free, and the exit listener has been called."""
        self._end(name, self._kill)

    def pause(self, name: str) -> None:
        """SIGSTOP to the node's process group; returns once the node is stopped."""
        self._signal_running(name, signal.SIGSTOP, paused=True)

    def resume(self, name: str) -> None:
        self._signal_running(name, signal.SIGCONT, paused=False)

    def remove(self, name: str) -> None:
        if not NODE_NAME.match(name):
            return
        with self._node_lock(name):
            self.stop(name)
            node_dir = self._dir / name
            self._trash.remove(node_dir)  # the name is free at once; the files go in the background
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
            self._adopt(node, pid)  # nodes of a previous control plane
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
        return self._probe(node.config, timeout)

    def wait_ready(self, name: str, timeout: float) -> bool:
        with self._lock:
            node = self._nodes.get(name)
        if node is None or node.ready_told:
            pause_for_probe(timeout)
            return False
        # Until its binary has been seen reporting (a build without systemd support never
        # does), a node is probed at the pause's pace; its report still ends the pause early.
        if node.ready.wait(timeout if self._ready.will_report(node) else min(timeout, PROBE_PAUSE)):
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
        with self._lock:
            nodes = list(self._nodes.values())
        threads = self._exits.threads(nodes)
        reader = self._ready.reader
        if reader is not None:
            threads.append(reader)
        for thread in threads:
            thread.join(timeout=2.0)
        if not any(t.is_alive() for t in threads):
            self._closing.release()
            self._ready.release()
        self._trash.close()
        self._frontends.close()
        self._probes.close()
        for node in nodes:
            if node.proc is not None and node.proc.returncode is None:
                # Running on is intended, not a leak: without this, Popen.__del__ warns
                # "subprocess ... is still running". A later runtime re-adopts and reaps it.
                setattr(node.proc, "_child_created", False)  # noqa: B010

    # --- extras (not in the protocol) ---

    @property
    def data_dir(self) -> Path:
        return self._dir

    def node_dir(self, name: str) -> Path:
        return self._dir / name

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of the node's log (why it exited, typically)."""
        return tail(self._dir / name / LOG_FILE, lines)

    def set_addresses(self, name: str, extra: Sequence[str]) -> None:
        """As TcpNodeCommands.set_addresses; for a node in TLS mode preferred, its forwarders are
        what listens on its port, so they move (the node itself stays on its own address)."""
        node = self._get(name)
        if node is None or node.backend is None:
            super().set_addresses(name, extra)
            return
        if self._live_pid(node) is None:
            raise RuntimeError_(f"node {name} is not running")
        self._open_frontends(node, [node.config.host, *extra])

    def set_iam_verifier(self, verify: IamVerify) -> None:
        self._iam_verify = verify

    # --- security ---

    def _plain_port(self, name: str) -> int | None:
        node = self._get(name)
        return node.backend[0] if node is not None and node.backend is not None else None

    def _store_config(self, name: str, config: NodeConfig) -> None:
        node = self._get(name)
        if node is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        node.config = config
        save_record(node)

    def _apply_sasl(self, name: str, config: NodeConfig) -> None:
        """Rewrite the node's SASL database: Cyrus reads it at each authentication, so the
        running memcached takes the new users at once. Turning SASL on or off takes a restart
        (the text protocol is off with it)."""
        node = self._get(name)
        if node is None or self._live_pid(node) is None:
            raise RuntimeError_(f"node {name} is not running")
        users = sasl_users(config.security) if config.security is not None else {}
        if bool(users) != bool(node.config.security and sasl_users(node.config.security)):
            raise RuntimeError_(f"node {name}: turning memcached SASL on or off takes a restart", temporary=False)
        sasl_dir = node.dir / memcached_adapter.SASL_DIR
        for file_name, text in memcached_adapter.sasl_files(config, sasl_dir)[0].items():
            write_atomic(sasl_dir / file_name, text)
        try:
            memcached_adapter.write_sasldb(sasl_dir / "sasldb2", users)
        except ValueError as exc:
            raise RuntimeError_(f"node {name}: {exc}", temporary=False) from exc

    def _adopt(self, node: Node, pid: int) -> None:
        """Watch a running node's exit and, in TLS mode preferred, open its forwarders."""
        self._exits.watch(node, pid)
        if node.backend is not None and not self._frontends.has(node.name):
            self._open_frontends(node, self._frontend_addresses(node))

    def _frontend_addresses(self, node: Node) -> list[str]:
        """Where a preferred-mode node is reached: its address and its `bind` setting's."""
        extra = node.config.settings.get("bind", "").split()
        return [node.config.host, *extra]

    def _open_frontends(self, node: Node, addresses: Sequence[str]) -> None:
        assert node.backend is not None
        iam: IamFront | None = None
        if node.config.security is not None and node.config.security.iam_realm is not None:
            socket_path = front_socket(node.dir)
            iam = iam_front(node.config.security, lambda: self._iam_verify,
                            str(socket_path) if socket_path is not None else None)
        self._frontends.open(node.name, addresses, node.config.port, node.config.host, node.backend, iam)

    # --- starting ---

    def _spawn(self, config: NodeConfig) -> NodeInfo:
        binary = self._binary_for(config)
        node_dir = self._dir / config.name
        tls = config.security.tls if config.security is not None else None
        backend = None
        iam = config.security is not None and config.security.iam_realm is not None
        if tls is not None and (tls.mode == "preferred" or iam) and config.engine != "memcached":
            plain, secure = free_ports(config.host)
            backend = (plain, secure)
        try:
            launch = adapter_for(config.engine).launch(config, binary, node_dir, run_as_root=self._as_root,
                                                       notify=self._ready.address is not None, backend=backend)
            node = save_node(node_dir, without_seed(config), binary, launch.marker, launch.files, backend)
            if launch.sasl is not None:
                memcached_adapter.write_sasldb(node_dir / launch.sasl.path, launch.sasl.users)
        except ValueError as exc:
            raise RuntimeError_(f"cannot start node {config.name}: {exc}", temporary=False) from exc
        if config.engine in redis_adapter.RedisAdapter.engines:
            place_files(node_dir, redis_adapter.start_data(config))
        with self._lock:
            self._nodes[config.name] = node
        check_bindable(config)  # the common failure, seen before forking, without waiting
        env = {**os.environ, **launch.env} if launch.env else None
        if launch.notify and self._ready.address is not None:
            env = {**(env or os.environ), "NOTIFY_SOCKET": self._ready.address}
            self._ready.start_reading()
        proc = self._fork(launch.argv, node_dir, binary, env)
        with self._lock:
            node.proc = proc
        if env is not None:
            self._ready.expect(node, proc.pid)
        try:
            write_atomic(node_dir / PID_FILE, f"{proc.pid}\n")
            # Without a grace, start() does not look at the child: a node that fails at once is
            # reported by its watcher as any exit is, whether it fails before or after this line
            # (a poll() here made the same failure an error or an exit notice by scheduling luck).
            exited = self._start_grace > 0 and self._exits.wait_exit(proc.pid, proc, self._start_grace)
        except BaseException:
            pids.signal_node(proc.pid, signal.SIGKILL, group=True)  # no node we cannot account for
            proc.wait()
            raise
        if exited:
            raise self._exited_at_once(node, proc)
        self._exits.watch(node, proc.pid)
        if backend is not None:
            try:
                self._open_frontends(node, self._frontend_addresses(node))
            except RuntimeError_:
                self.kill(config.name)  # a node nobody can reach on its port is no node
                raise
        return self._info(node, proc.pid)

    def _fork(self, argv: Sequence[str], node_dir: Path, binary: str, env: dict[str, str] | None
              ) -> subprocess.Popen[bytes]:
        try:
            with open_private(node_dir / LOG_FILE, "ab") as log_file:
                return subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=node_dir,
                    start_new_session=True,  # Ctrl-C of the control plane must not reach nodes
                    close_fds=True,
                    env=env,
                    umask=PRIVATE_UMASK,  # the node's own files (dump.rdb, AOF, pid file): this user's only
                )
        except OSError as exc:
            raise RuntimeError_(f"cannot run {binary}: {exc.strerror or exc}", temporary=False) from exc

    def _exited_at_once(self, node: Node, proc: subprocess.Popen[bytes]) -> RuntimeError_:
        code = proc.wait()
        remove_pid_file(node.dir / PID_FILE, proc.pid)
        log_path = node.dir / LOG_FILE
        last = tail(log_path, 8)
        config = node.config
        return RuntimeError_(
            f"{config.engine} {config.version} node {config.name} exited at once (code {code}); "
            f"last lines of {log_path}:\n{last}",
            temporary="Address already in use" in last,
        )

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

    # --- running nodes ---

    def _get(self, name: str) -> Node | None:
        with self._lock:
            node = self._nodes.get(name)
        if node is not None:
            return node
        loaded = load_node(self._dir, name)
        if loaded is None:
            return None
        with self._lock:
            return self._nodes.setdefault(name, loaded)

    def _config_of(self, name: str) -> NodeConfig | None:
        node = self._get(name)
        return None if node is None else node.config

    def _info(self, node: Node, pid: int | None) -> NodeInfo:
        if pid is None:
            return node_info(node.config, NodeState.EXITED, None)
        return node_info(node.config, NodeState.PAUSED if pids.is_stopped(pid) else NodeState.RUNNING, pid)

    def _live_pid(self, node: Node) -> int | None:
        """The pid of the node's running (or paused) process, or None."""
        proc = node.proc
        if proc is not None:
            # Our own child: Popen knows (and reaps it if it has just exited).
            return proc.pid if proc.poll() is None else None
        pid = read_pid(node.dir / PID_FILE)
        if pid is not None and self._is_node(pid, node):
            return pid
        return None

    def _is_node(self, pid: int, node: Node) -> bool:
        return pids.runs(pid, node.binary, node.marker, node.dir)

    def _signal_running(self, name: str, sig: signal.Signals, *, paused: bool) -> None:
        with self._node_lock(name):
            node = self._get(name)
            pid = self._live_pid(node) if node else None
            if pid is None:
                raise RuntimeError_(f"node {name} is not running", temporary=False)
            pids.signal_node(pid, sig, group=True)
            pids.await_stopped(pid, paused)  # so an inspect() right after pause() says PAUSED

    # --- exits ---

    def _end(self, name: str, how: Callable[[Node, int], None]) -> None:
        """Make the node exit, if it runs, by `how(node, pid)` (which returns once the process
        has gone); return once the exit listener has been told, so a start() that follows is not
        taken for this exit."""
        with self._node_lock(name):
            node = self._get(name)
            pid = self._live_pid(node) if node else None
            if node is None or pid is None:
                return
            how(node, pid)
            self._exits.after_exit(node, pid)
            remove_pid_file(node.dir / PID_FILE, pid)

    def _kill(self, node: Node, pid: int) -> None:
        pids.signal_node(pid, signal.SIGKILL, group=True)
        if not self._exits.wait_exit(pid, node.proc, _KILL_WAIT):
            raise RuntimeError_(f"node {node.name} (pid {pid}) did not exit after SIGKILL")

    def _exited(self, node: Node, pid: int) -> None:
        """An exit, handled once (the ExitWatcher sees to that): clean up, tell the listener,
        then wake wait_ready, so that a wait_ready which ends with an exit comes after its
        notice, never before."""
        self._ready.forget(node, pid)
        remove_pid_file(node.dir / PID_FILE, pid)
        self._frontends.close_node(node.name)  # its addresses are free, as a node's are
        if not self._closing.is_set():
            tell_exit(self._listener, node.name)
        node.ready.set()  # news for wait_ready(): it exited
