"""How the engine reaches a node: one `Reach` value (address, TLS, user, password) for every
connection the engine makes to it (probes, stats, replication commands, saves), built in one
place (`reach_of`) from the node's config.

TLS contexts are built once per CA file (loading a CA and creating a context costs about a
millisecond, and a node is probed every 200 ms) by a `TlsContexts` each runtime owns, which also
keeps each node's last TLS session to resume: a resumed handshake took 1.0 ms here where a full
one took 1.8 ms (no certificate sent and verified), a whole TLS probe 2.5 ms instead of 3.1.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from engine.runtime.base import NodeConfig
from engine.security import TlsFiles, sasl_users
from engine.versions import parse_version

__all__ = ["Reach", "TlsContexts", "has_acl", "reach_of", "receive", "server_context"]


def receive(sock: socket.socket, deadline: float) -> bytes:
    """What the node sends next (at most 64 KiB), waiting until `deadline` (time.monotonic());
    raises TimeoutError after it, ConnectionError when the node has closed the connection."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(remaining)
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("connection closed by the server")
    return chunk


@dataclass(frozen=True)
class Reach:
    """Where a node listens for the engine and who the engine is there. `tls`: a client
    context that verifies the node's certificate against the service's CA (the address
    must be one of its subjectAltNames). `username` None: `AUTH <password>` (a requirepass)."""

    host: str
    port: int
    tls: ssl.SSLContext | None = field(default=None, compare=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sessions: TlsContexts | None = field(default=None, compare=False, repr=False)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self, timeout: float) -> socket.socket:
        """A connected socket (TLS handshake done when `tls`), Nagle off; raises OSError
        (ssl.SSLError, TimeoutError and ConnectionError are OSErrors)."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                session = self.sessions.session(self.tls, self.host, self.port) if self.sessions else None
                return self.tls.wrap_socket(sock, server_hostname=self.host, session=session)
        except BaseException:
            sock.close()
            raise
        return sock

    def keep(self, sock: socket.socket) -> None:
        """Remember the TLS session of `sock` (after a reply: TLS 1.3 sends its ticket then)
        for the next connect to resume."""
        if self.sessions is not None and isinstance(sock, ssl.SSLSocket):
            self.sessions.keep(sock, self.host, self.port)

    def auth(self) -> list[str] | None:
        """The AUTH command to send first, or None when the node needs none."""
        if self.password is None:
            return None
        return ["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]


class TlsContexts:
    """Client TLS contexts by CA file, rebuilt when the file changes. Thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[str, tuple[tuple[int, int], ssl.SSLContext]] = {}
        self._sessions: dict[tuple[str, int], tuple[ssl.SSLContext, ssl.SSLSession]] = {}

    def session(self, context: ssl.SSLContext, host: str, port: int) -> ssl.SSLSession | None:
        """The node's last session, if it came from `context` (a session of another one is refused)."""
        with self._lock:
            found = self._sessions.get((host, port))
        return found[1] if found is not None and found[0] is context else None

    def keep(self, sock: ssl.SSLSocket, host: str, port: int) -> None:
        session = sock.session
        if session is not None and sock.context is not None:
            with self._lock:
                self._sessions[(host, port)] = (sock.context, session)

    def client(self, ca_file: str) -> ssl.SSLContext:
        """A context that trusts `ca_file` only and checks the node's address against its
        certificate. Raises OSError (ssl.SSLError included) when the CA cannot be read."""
        st = os.stat(ca_file)
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            found = self._contexts.get(ca_file)
            if found is not None and found[0] == stamp:
                return found[1]
        context = ssl.create_default_context(cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with self._lock:
            self._contexts[ca_file] = (stamp, context)
        return context


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    """A server TLS context with the certificate and key of `tls` (TLS 1.2 or later; clients
    present no certificate, as on AWS). Raises OSError (ssl.SSLError included)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def has_acl(config: NodeConfig) -> bool:
    """Whether the node's engine has ACL users (Redis 6.0+, every Valkey)."""
    return config.engine == "valkey" or (config.engine == "redis" and parse_version(config.version) >= (6,))


def reach_of(config: NodeConfig, contexts: TlsContexts, *, plain_port: int | None = None) -> Reach:
    """How the engine reaches node `config`: as the admin user where the node has security
    (the requirepass setting where it has none), over TLS where the node's port speaks it.
    `plain_port`: the node's own plain-text port behind a TLS-preferred sniffer or an IAM
    authenticator (the runtime knows it); the engine talks to the node there, in plain text, without the forwarder.
    Raises OSError when the CA file cannot be read."""
    security = config.security
    if security is None:
        return Reach(config.host, config.port, password=config.settings.get("requirepass") or None)
    if config.engine == "memcached":
        # SASL (binary protocol, PLAIN), on only where the customer has users.
        on = bool(sasl_users(security))
        username, password = (security.admin.name, security.admin.password) if on else (None, None)
    elif has_acl(config):
        username, password = security.admin.name, security.admin.password
    else:
        username, password = None, None  # rendering refused users on this engine: no auth
    tls = security.tls
    if tls is not None and plain_port is not None and (tls.mode == "preferred" or security.iam_realm):
        return Reach(config.host, plain_port, username=username, password=password)
    context = contexts.client(tls.ca_file) if tls is not None else None
    return Reach(config.host, config.port, context, username, password, contexts)
