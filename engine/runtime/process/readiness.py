"""Readiness reports for the process runtime: nodes say when they serve, so nobody polls.

On Linux redis/valkey nodes run with `supervised systemd` and NOTIFY_SOCKET set to one abstract
datagram socket of the runtime, so a node sends READY=1 the moment it serves (after loading its
data) and `wait_ready` returns then; once a binary has been seen reporting, its starting nodes
are not polled at all. The kernel stamps every message with the sender's pid (SO_PASSCRED),
which names the node. One thread reads the socket all the time: a node blocks in sd_notify()
while the socket's queue (10 datagrams) is full, and nodes also send STATUS= lines (loading,
replication in some versions) and STOPPING=1. After a control plane restart nothing listens at
that address any more; a node stopped later then logs one harmless "systemd supervision error"
line.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
import time
import uuid

from engine.runtime.process.pids import Closing, readable
from engine.runtime.process.records import Node

__all__ = ["ReadinessReports"]

log = logging.getLogger(__name__)

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_EARLY_LIMIT = 1000  # READY=1 of pids not registered (yet): more are senders we never started


class ReadinessReports:
    """The runtime's sd_notify socket and its reader. Absent (`address` None) where the
    platform lacks abstract sockets or SO_PASSCRED: nodes are then only probed."""

    def __init__(self, closing: Closing) -> None:
        self._closing = closing
        self._sock = _notify_socket()
        self._lock = threading.Lock()  # guards the three below and the reader thread
        self._by_pid: dict[int, Node] = {}  # nodes started here that may report, by pid
        self._early: set[int] = set()  # READY=1 from a pid not registered yet
        self._reporting: set[str] = set()  # binaries seen sending READY=1 (others may lack systemd support)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str | None:
        """NOTIFY_SOCKET for a node's environment: '@' spells the abstract address's leading NUL."""
        if self._sock is None:
            return None
        name = self._sock.getsockname()
        raw = name if isinstance(name, bytes) else name.encode()
        return "@" + raw[1:].decode("ascii")

    def start_reading(self) -> None:
        """Start the reader thread (once), before the first node that may report is forked."""
        with self._lock:
            if self._thread is not None or self._sock is None or self._closing.is_set():
                return
            self._thread = threading.Thread(target=self._read, name="node-ready", daemon=True)
            self._thread.start()

    def expect(self, node: Node, pid: int) -> None:
        """Node `node` runs as `pid` and may report: its READY=1 sets node.ready (also when it
        came before this call, which the fork makes possible)."""
        with self._lock:
            node.reports = True
            self._by_pid[pid] = node
            if pid in self._early:
                self._early.discard(pid)
                node.ready.set()

    def forget(self, node: Node, pid: int) -> None:
        """`pid` has exited: a later process with that pid is someone else."""
        with self._lock:
            if self._by_pid.get(pid) is node:
                del self._by_pid[pid]

    def will_report(self, node: Node) -> bool:
        """Whether the node's READY=1 can be waited for: it was started to report, and its
        binary has been seen reporting (a build without systemd support never does)."""
        with self._lock:
            return node.reports and node.binary in self._reporting

    @property
    def reader(self) -> threading.Thread | None:
        """The reader thread, for close() to join before it calls release()."""
        with self._lock:
            return self._thread

    def release(self) -> None:
        """Close the socket, once the reader has ended."""
        if self._sock is not None:
            self._sock.close()

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._closing.is_set():
            try:
                if sock.fileno() not in readable([sock.fileno(), self._closing.fd], None):
                    continue  # the closing pipe
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
            self._ready(pid)

    def _ready(self, pid: int) -> None:
        with self._lock:
            node = self._by_pid.get(pid)
            if node is None:
                if len(self._early) > _EARLY_LIMIT:
                    self._early.clear()
                self._early.add(pid)
                return
            self._reporting.add(node.binary)
        node.ready.set()


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


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid: int = _UCRED.unpack_from(data)[0]
            return pid
    return None
