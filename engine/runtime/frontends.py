"""The fronts on a runtime's nodes' ports: in TLS mode "preferred", sniffing forwarders
(engine.proxy.sniff); for nodes with IAM users, IAM authenticators that terminate the client's
TLS, check a login's token and relay to the node's private plain-text port: HAProxy processes
with our Lua step (engine.proxy.iam_haproxy: the data path in C) where HAProxy is installed,
else the asyncio one (engine.proxy.iam_auth). One front per address the node is reached on (its
own, and the floating endpoint addresses it holds). A node's fronts open when it starts (or
when a new runtime re-adopts it) and close when it exits, so a failed primary lets go of its
addresses as a node does.

They live in the control plane's process (HAProxy: its children): while no runtime runs,
such nodes keep running but their port is closed, until a runtime adopts them again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.proxy.haproxy import FrontConfig, HaproxyForwarders, find_haproxy
from engine.proxy.hub import ProxyHub
from engine.proxy.iam_auth import MAX_CONNECTION_AGE, IamAuthenticator, IamBackend, iam_password
from engine.proxy.iam_haproxy import IamVerifierSocket, VerifyLogin, iam_front_config
from engine.proxy.iam_sessions import IamSessionReaper
from engine.proxy.tcp import ProxyError
from engine.runtime.base import IamVerify, RuntimeError_
from engine.security import NodeSecurity

__all__ = ["Frontends", "IamFront", "free_ports", "iam_front"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IamFront:
    """What a node's IAM authenticators need: the check of a token (for the node's realm), the
    internal password of an IAM user, and the node's certificate and key for the client's TLS."""

    checks: VerifyLogin
    cert_file: str
    key_file: str
    node_socket: str | None = None  # the node's unix socket for the front (HAProxy), if it has one

    def server_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def iam_front(security: NodeSecurity, verifier: Callable[[], IamVerify | None],
              node_socket: str | None = None) -> IamFront:
    """The IamFront of a node with `security` (an iam_realm and TLS): tokens checked by what
    `verifier()` returns when a client logs in (the runtime's, set after it was made; none set:
    every token is refused), logging in to the node as the IAM user with its internal password."""
    realm, tls = security.iam_realm, security.tls
    if realm is None or tls is None:
        raise RuntimeError_("an IAM authenticator needs TLS and a realm", temporary=False)

    def verify(user: str, token: str) -> bool:
        check = verifier()
        return check is not None and check(realm, user, token)

    return IamFront(VerifyLogin(verify, lambda user: iam_password(security.admin, user)), tls.cert_file, tls.key_file,
                    node_socket)


def free_ports(host: str, count: int = 2) -> tuple[int, ...]:
    """`count` ports free on `host` now, as the kernel hands them out (ephemeral ports)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return tuple(s.getsockname()[1] for s in socks)
    except OSError as exc:
        raise RuntimeError_(f"no free ports on {host} for the node's TLS-preferred listeners: {exc}") from exc
    finally:
        for sock in socks:
            sock.close()


class Frontends:
    """Fronts by node. Thread safe; the event loop (and HAProxy's pool) start with the first one.
    `workdir`: where HAProxy IAM fronts keep their files (None, or no haproxy binary: the asyncio
    authenticator). A thread ends HAProxy fronts' IAM sessions older than `iam_max_age` on `clock`
    (AWS: 12 hours), looking every `sweep_every` seconds."""

    def __init__(self, workdir: Path | None = None, haproxy: str | None = None, *,
                 iam_max_age: float = MAX_CONNECTION_AGE, clock: Callable[[], float] = time.monotonic,
                 sweep_every: float = 60.0) -> None:
        self.iam_max_age = iam_max_age
        self.clock = clock  # read at each sweep: a test may swap it
        self._sweep_every = sweep_every
        self._reapers: dict[str, IamSessionReaper] = {}  # HAProxy front name -> its reaper
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hub: ProxyHub | None = None
        self._open: dict[str, tuple[str, ...]] = {}  # node -> the addresses it has fronts on
        self._workdir = workdir
        self._binary = haproxy if haproxy is not None else find_haproxy() if workdir is not None else None
        self._haproxy: HaproxyForwarders | None = None
        self._verifier: IamVerifierSocket | None = None
        # HAProxy front name -> its id at the verifier, and its configuration (to restart it with).
        self._front_ids: dict[str, tuple[str, FrontConfig]] = {}

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._open

    def open(self, name: str, addresses: Sequence[str], port: int, host: str, backend: tuple[int, int],
             iam: IamFront | None = None) -> None:
        """Front `address:port` for each of `addresses`: forward to the node's plain and TLS ports
        on `host` (with `iam`: authenticate, then relay to its plain port); fronts on addresses no
        longer listed close. Raises RuntimeError_."""
        wanted = tuple(dict.fromkeys(addresses))
        with self._lock:
            hub = self._hub
            if hub is None:
                hub = self._hub = ProxyHub()
                hub.start()
            had = self._open.get(name, ())
            opened: list[str] = []
            try:
                for address in had:
                    if address not in wanted:
                        self._remove(f"{name}@{address}")
                for address in wanted:
                    front = f"{name}@{address}"
                    if iam is None:
                        hub.add_tls_sniffer(front, address, port, (host, backend[0]), (host, backend[1]))
                    elif self._binary is not None and self._workdir is not None:
                        self._add_haproxy(front, address, port, (host, backend[0]), iam)
                    else:
                        hub.add_iam_authenticator(front, address, port,
                                                  _authenticator(iam, address, port, IamBackend(host, backend[0])))
                    opened.append(address)
            except (ProxyError, OSError) as exc:
                raise RuntimeError_(f"node {name}: {exc}") from exc
            finally:
                self._open[name] = tuple(a for a in wanted if a in opened or (a in had and self._serves(name, a)))

    def addresses(self, name: str) -> tuple[str, ...]:
        with self._lock:
            return self._open.get(name, ())

    def close_node(self, name: str) -> None:
        """Close the node's fronts (its exit): its addresses are free at once."""
        with self._lock:
            had = self._open.pop(name, ())
            if self._hub is None:
                return
            for address in had:
                with contextlib.suppress(ProxyError):
                    self._remove(f"{name}@{address}")

    def close(self) -> None:
        with self._lock:
            self._open.clear()
            for front_id, _ in self._front_ids.values():
                self._forget_pem(front_id)
            self._front_ids.clear()
            hub, self._hub = self._hub, None
            pool, self._haproxy = self._haproxy, None
            verifier, self._verifier = self._verifier, None
            self._reapers.clear()
            sweeper, self._sweeper = self._sweeper, None
        self._stopping.set()
        if sweeper is not None:
            sweeper.join(5.0)
        if pool is not None:
            pool.close()
        if verifier is not None:
            verifier.close()
        if hub is not None:
            hub.close()
        if self._workdir is not None:  # nothing of the fronts is left under the runtime's directory
            for directory in (self._workdir / "haproxy", self._workdir):
                with contextlib.suppress(OSError):
                    directory.rmdir()

    def sweep_iam_sessions(self) -> list[str]:
        """End the HAProxy fronts' IAM sessions older than the limit now; the ids ended."""
        with self._lock:
            reapers = list(self._reapers.values())
        ended: list[str] = []
        for reaper in reapers:
            try:
                ended += reaper.sweep()
            except ProxyError as exc:  # a front going away, or a HAProxy restarting: next time
                log.info("IAM sessions not checked: %s", exc)
        return ended

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self._sweep_every):
            self.sweep_iam_sessions()

    # -- lock held ---------------------------------------------------------------------------

    def _serves(self, name: str, address: str) -> bool:
        front = f"{name}@{address}"
        return front in self._front_ids or (self._hub is not None and front in self._hub.names())

    def _add_haproxy(self, front: str, address: str, port: int, node: tuple[str, int], iam: IamFront) -> None:
        assert self._workdir is not None and self._binary is not None
        if self._haproxy is None:
            pool = HaproxyForwarders(self._workdir / "haproxy", self._binary)
            pool.start()
            self._haproxy, self._verifier = pool, IamVerifierSocket()
            self._stopping.clear()
            self._sweeper = threading.Thread(target=self._sweep_loop, name="iam-sessions", daemon=True)
            self._sweeper.start()
        assert self._verifier is not None
        known = self._front_ids.get(front)
        if known is not None:  # adding again brings back a HAProxy that died; the node's port is fixed
            self._haproxy.add(front, address, port, node, front=known[1])
            return
        front_id = self._verifier.register(iam.checks)
        try:
            config = iam_front_config(self._workdir / "haproxy", front_id, iam.cert_file, iam.key_file,
                                      self._verifier.path, front_id, node=node, node_socket=iam.node_socket)
            self._haproxy.add(front, address, port, node, front=config)
        except BaseException:
            self._verifier.unregister(front_id)
            raise
        self._front_ids[front] = (front_id, config)
        self._reapers[front] = IamSessionReaper(functools.partial(self._haproxy.command, front), self.iam_max_age,
                                                clock=lambda: self.clock())

    def _remove(self, front: str) -> None:
        known = self._front_ids.pop(front, None)
        self._reapers.pop(front, None)
        if known is not None:
            front_id = known[0]
            if self._haproxy is not None:
                self._haproxy.remove(front)
            if self._verifier is not None:
                self._verifier.unregister(front_id)
            self._forget_pem(front_id)
            return
        if self._hub is not None:
            self._hub.remove(front)


    def _forget_pem(self, front_id: str) -> None:
        if self._workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self._workdir / "haproxy" / f"{front_id}.pem").unlink()


def _authenticator(iam: IamFront, address: str, port: int, node: IamBackend) -> Callable[[], IamAuthenticator]:
    context = iam.server_tls()
    return lambda: IamAuthenticator(address, port, node, iam.checks.verify, iam.checks.password_of,
                                    server_tls=context)
