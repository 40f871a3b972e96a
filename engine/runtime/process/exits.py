"""Exit watching for the process runtime: a node's exit is noticed at once, without polling.

One watcher thread per running node blocks on a pidfd (Linux >= 5.3) together with the
runtime's closing pipe; for our own children the watcher then reaps them with `Popen.wait()`.
Without pidfd (macOS) watchers poll every 200 ms.

Every exit is handled exactly once, by whichever thread sees it first: the node's watcher, or
kill()/stop() which wait for the exit they caused. Handling it calls the runtime's `on_exit`,
which tells the exit listener; kill()/stop() return only after that, so a start() that follows
cannot be mistaken for the exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable

from engine.runtime.process.pids import Closing, pid_running, pidfd_works, readable, reap
from engine.runtime.process.records import Node, Watch

__all__ = ["ExitWatcher"]

_POLL_INTERVAL = 0.2  # watchers without pidfd
# kill()/stop() wait this long for a watcher that has claimed the exit to finish telling the
# listener. A bound, not a pace: it only matters when the listener blocks on the very node lock
# that kill()/stop() hold, which would otherwise deadlock.
_LISTENER_WAIT = 2.0


class ExitWatcher:
    """Watches nodes' processes and reports each exit once through `on_exit(node, pid)`.

    `is_node(pid, node)` tells whether a pid (of a node not started here) still is that node,
    checked once a pidfd pins the pid."""

    def __init__(self, on_exit: Callable[[Node, int], None], is_node: Callable[[int, Node], bool],
                 closing: Closing) -> None:
        self._on_exit = on_exit
        self._is_node = is_node
        self._closing = closing
        self._lock = threading.Lock()  # guards node.watch and watch.claimed
        self._pidfd = pidfd_works()

    def watch(self, node: Node, pid: int) -> None:
        """Watch the node's process `pid` until it exits (no-op if it is watched already)."""
        with self._lock:
            if self._closing.is_set() or self._watching(node, pid):
                return
        proc = node.proc if node.proc is not None and node.proc.pid == pid else None
        pidfd: int | None = None
        if self._pidfd:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                # Gone already (someone reaped it): the watcher without a pidfd reports that
                # at once, so this exit is not lost.
                pidfd = None
            else:
                # The pidfd pins the pid: check it is still the node (not a reused pid) now.
                if proc is None and not self._is_node(pid, node):
                    os.close(pidfd)
                    return
        done = threading.Event()
        thread = threading.Thread(target=self._run, args=(node, pid, proc, pidfd, done),
                                  name=f"node-exit-{node.name}", daemon=True)
        with self._lock:
            if self._closing.is_set() or self._watching(node, pid):
                if pidfd is not None:
                    os.close(pidfd)
                return
            node.watch = Watch(pid, thread, done)
        thread.start()

    def wait_exit(self, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
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
                exited = proc.returncode is not None or bool(readable([pidfd], timeout))
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
                ready = readable([pidfd], timeout)
            finally:
                os.close(pidfd)
            if ready:
                reap(pid, None)
                return True
            return False
        deadline = time.monotonic() + timeout
        while pid_running(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def after_exit(self, node: Node, pid: int) -> None:
        """kill()/stop() saw the (reaped) exit: handle it here unless the node's watcher did
        first, and return only once it has been handled (the listener has run), unless we are
        that listener calling back. Nobody is told when nobody watches that process (the
        runtime is closing)."""
        with self._lock:
            watch = node.watch
        if watch is None or watch.pid != pid or self.report(node, pid):
            return
        if watch.thread is not threading.current_thread():
            watch.done.wait(timeout=_LISTENER_WAIT)

    def report(self, node: Node, pid: int) -> bool:
        """Handle the exit of `pid` once: False if another thread has handled it already."""
        with self._lock:
            watch = node.watch
            if watch is not None and watch.pid == pid:
                if watch.claimed:
                    return False
                watch.claimed = True
        self._on_exit(node, pid)
        return True

    def threads(self, nodes: list[Node]) -> list[threading.Thread]:
        """The watcher threads of `nodes` (close() joins them)."""
        with self._lock:
            return [n.watch.thread for n in nodes if n.watch is not None]

    def _watching(self, node: Node, pid: int) -> bool:
        watch = node.watch
        return watch is not None and watch.pid == pid and not watch.done.is_set()

    def _run(self, node: Node, pid: int, proc: subprocess.Popen[bytes] | None, pidfd: int | None,
             done: threading.Event) -> None:
        try:
            if not self._block_until_exit(pid, proc, pidfd):
                return  # the runtime is closing
            reap(pid, proc)
            self.report(node, pid)
        finally:
            if pidfd is not None:
                os.close(pidfd)
            done.set()

    def _block_until_exit(self, pid: int, proc: subprocess.Popen[bytes] | None, pidfd: int | None) -> bool:
        """True once the process has exited; False when the runtime closes first."""
        if pidfd is not None:
            while True:
                with contextlib.suppress(InterruptedError):  # pragma: no cover - retried since 3.5
                    if pidfd in readable([pidfd, self._closing.fd], None):
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
            if not pid_running(pid):
                return True
            self._closing.wait(_POLL_INTERVAL)
        return False
