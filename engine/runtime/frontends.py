"""The forwarders in front of a runtime's nodes in TLS mode "preferred" (engine.proxy.sniff),
or the IAM authenticators in front of nodes with IAM users (engine.proxy.iam_auth: it
terminates the client's TLS and speaks plain text to the node's private port): one per address
the node is reached on (its own, and the floating endpoint addresses it holds),
all on one event loop this runtime owns. A node's forwarders open when it starts (or when a
new runtime re-adopts it) and close when it exits, so a failed primary lets go of its addresses
as a node does.

They live in the control plane's process: while no runtime runs, preferred-mode nodes keep
running but their port is closed, until a runtime adopts them again.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.proxy.hub import ProxyHub
from engine.proxy.iam_auth import IamAuthenticator, IamBackend, Verify, iam_password
from engine.proxy.tcp import ProxyError
from engine.runtime.base import IamVerify, RuntimeError_
from engine.security import NodeSecurity

__all__ = ["Frontends", "IamFront", "free_ports", "iam_front"]


@dataclass(frozen=True)
class IamFront:
    """What a node's IAM authenticators need: the check of a token (for the node's realm), the
    internal password of an IAM user, and the node's certificate for the client's TLS."""

    verify: Verify
    password_of: Callable[[str], str]
    server_tls: ssl.SSLContext


def iam_front(security: NodeSecurity, verifier: Callable[[], IamVerify | None]) -> IamFront:
    """The IamFront of a node with `security` (an iam_realm and TLS): tokens checked by what
    `verifier()` returns when a client logs in (the runtime's, set after it was made; none set:
    every token is refused), logging in to the node as the IAM user with its internal password.
    Raises RuntimeError_ when the node's certificate cannot be loaded."""
    realm, tls = security.iam_realm, security.tls
    if realm is None or tls is None:
        raise RuntimeError_("an IAM authenticator needs TLS and a realm", temporary=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except OSError as exc:
        raise RuntimeError_(f"cannot load the node's certificate for its IAM authenticator: {exc}") from exc

    def verify(user: str, token: str) -> bool:
        check = verifier()
        return check is not None and check(realm, user, token)

    return IamFront(verify, lambda user: iam_password(security.admin, user), context)


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
    """Sniffing forwarders by node. Thread safe; the event loop starts with the first one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hub: ProxyHub | None = None
        self._open: dict[str, tuple[str, ...]] = {}  # node -> the addresses it has forwarders on

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._open

    def open(self, name: str, addresses: Sequence[str], port: int, host: str, backend: tuple[int, int],
             iam: IamFront | None = None) -> None:
        """Forward `address:port` for each of `addresses` to the node's plain and TLS ports on
        `host` (with `iam`: authenticate there, then relay to its plain port); forwarders on
        addresses no longer listed close. Raises RuntimeError_."""
        wanted = tuple(dict.fromkeys(addresses))
        with self._lock:
            hub = self._hub
            if hub is None:
                hub = self._hub = ProxyHub()
                hub.start()
            had = self._open.get(name, ())
            try:
                for address in had:
                    if address not in wanted:
                        hub.remove(f"{name}@{address}")
                for address in wanted:
                    if iam is None:
                        hub.add_tls_sniffer(f"{name}@{address}", address, port, (host, backend[0]),
                                            (host, backend[1]))
                    else:
                        hub.add_iam_authenticator(f"{name}@{address}", address, port,
                                                  _authenticator(iam, address, port, IamBackend(host, backend[0])))
            except ProxyError as exc:
                raise RuntimeError_(f"node {name}: {exc}") from exc
            finally:
                self._open[name] = tuple(a for a in wanted if f"{name}@{a}" in hub.names())

    def addresses(self, name: str) -> tuple[str, ...]:
        with self._lock:
            return self._open.get(name, ())

    def close_node(self, name: str) -> None:
        """Close the node's forwarders (its exit): its addresses are free at once."""
        with self._lock:
            had = self._open.pop(name, ())
            if self._hub is None:
                return
            for address in had:
                with contextlib.suppress(ProxyError):
                    self._hub.remove(f"{name}@{address}")

    def close(self) -> None:
        with self._lock:
            self._open.clear()
            hub, self._hub = self._hub, None
        if hub is not None:
            hub.close()


def _authenticator(iam: IamFront, address: str, port: int, node: IamBackend) -> Callable[[], IamAuthenticator]:
    return lambda: IamAuthenticator(address, port, node, iam.verify, iam.password_of, server_tls=iam.server_tls)
