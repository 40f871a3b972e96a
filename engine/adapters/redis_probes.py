"""Health probes of redis/valkey nodes over one kept connection per node.

A probe used to open a connection (and shake hands for TLS, and AUTH) every time: at five
probes a second per node, the connects, accepts and closes were most of what watching idle
nodes cost the service. Here each node keeps one connection, and a probe is PING + INFO
replication on it, one write and one read:

- a freeze is a probe whose answer does not come within the timeout; that connection is closed
  (its late replies would answer the next probe) and the next probe connects afresh;
- a connection the node has closed (a restart, a `CLIENT KILL`, an idle `timeout`) fails at
  once, so the probe is retried on a new connection within the same timeout: a restarted node
  is not mistaken for a silent one;
- the version (INFO server) is asked once per connection: a node changes version only by
  restarting, which ends the connection;
- who to reach (address, TLS, user, password) is part of the connection: a new one is opened
  when it changes (a rotated password, TLS turned on).

Connections not used for `idle_after` seconds (nodes gone, no longer watched) are closed by the
next probe, so nothing needs telling when a node is removed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.access import Reach
from engine.adapters.redis import RespError, RespReader, describe_error, encode_command, parse_info
from engine.runtime.base import ProbeResult

_ASK = encode_command(["PING"]) + encode_command(["INFO", "replication"])


@dataclass
class _Kept:
    reach: Reach
    sock: socket.socket  # or an ssl.SSLSocket
    version: str | None
    used: float = field(default=0.0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class ProbeConnections:
    """NodeRuntime.probe for redis/valkey nodes on kept connections (thread-safe: a connection
    is taken out while a probe uses it, so two probes of one node never share one)."""

    def __init__(self, *, idle_after: float = 30.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._conns: dict[str, _Kept] = {}
        self._lock = threading.Lock()
        self._now = monotonic
        self._idle_after = idle_after
        self._swept = monotonic()

    def __len__(self) -> int:
        with self._lock:
            return len(self._conns)

    def probe(self, name: str, reach: Reach, timeout: float) -> ProbeResult:
        """PING + INFO replication on the node's kept connection. Never raises."""
        started = time.monotonic()
        deadline = started + timeout

        def failed(error: str) -> ProbeResult:
            return ProbeResult(False, None, None, error, (time.monotonic() - started) * 1000.0)

        self._sweep()
        with self._lock:
            kept = self._conns.pop(name, None)
        if kept is not None and kept.reach != reach:
            kept.close()
            kept = None
        try:
            if kept is not None:
                try:
                    replies = _ask(kept, deadline)
                except (ConnectionError, ValueError):  # the node ended it: a fresh one decides
                    kept.close()
                    kept = None
            if kept is None:
                kept = _open(reach, deadline)
                replies = _ask(kept, deadline)
        except (OSError, ValueError) as exc:  # TimeoutError, ConnectionError, ssl.SSLError are OSErrors
            if kept is not None:
                kept.close()
            return failed(describe_error(exc))
        except RespError as exc:  # a refused AUTH: that connection is of no use
            return failed(str(exc))
        kept.used = self._now()
        self._keep(name, kept)
        pong, replication = replies
        if isinstance(pong, RespError):  # LOADING, MASTERDOWN ...: the connection stays good
            return failed(str(pong))
        if pong != "PONG":
            return failed(f"unexpected PING reply {pong!r}")
        if isinstance(replication, RespError):
            return failed(str(replication))
        if not isinstance(replication, bytes):
            return failed("unexpected INFO reply")
        repl = parse_info(replication)
        return ProbeResult(True, repl.get("role"), kept.version, None, (time.monotonic() - started) * 1000.0,
                           details=repl)

    def forget(self, name: str) -> None:
        with self._lock:
            kept = self._conns.pop(name, None)
        if kept is not None:
            kept.close()

    def close(self) -> None:
        with self._lock:
            kept, self._conns = list(self._conns.values()), {}
        for conn in kept:
            conn.close()

    def _keep(self, name: str, kept: _Kept) -> None:
        with self._lock:
            other = self._conns.setdefault(name, kept)
        if other is not kept:  # a concurrent probe kept its own first
            kept.close()

    def _sweep(self) -> None:
        now = self._now()
        if now - self._swept < self._idle_after:
            return
        with self._lock:
            self._swept = now
            stale = [n for n, c in self._conns.items() if now - c.used >= self._idle_after]
            gone = [self._conns.pop(n) for n in stale]
        for conn in gone:
            conn.close()


def _open(reach: Reach, deadline: float) -> _Kept:
    """A new connection, AUTHed, with the node's version; raises OSError, ValueError, RespError."""
    sock = reach.connect(max(0.001, deadline - time.monotonic()))
    try:
        auth = reach.auth()
        sock.sendall((encode_command(auth) if auth else b"") + encode_command(["INFO", "server"]))
        reader = RespReader(sock, deadline)
        if auth is not None:
            reply = reader.reply()
            if isinstance(reply, RespError):
                raise reply
        server = reader.reply()
        reach.keep(sock)
    except BaseException:
        sock.close()
        raise
    # LOADING answers INFO too; an error reply leaves the version unknown until a reconnect.
    fields = parse_info(server) if isinstance(server, bytes) else {}
    # Valkey keeps redis_version at 7.2.4 for client compatibility and adds valkey_version.
    return _Kept(reach, sock, fields.get("valkey_version") or fields.get("redis_version"))


def _ask(kept: _Kept, deadline: float) -> tuple[object, object]:
    kept.sock.sendall(_ASK)
    reader = RespReader(kept.sock, deadline)
    return reader.reply(), reader.reply()
