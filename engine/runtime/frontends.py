"""The forwarders in front of a runtime's nodes in TLS mode "preferred" (engine.proxy.sniff):
one per address the node is reached on (its own, and the floating endpoint addresses it holds),
all on one event loop this runtime owns. A node's forwarders open when it starts (or when a
new runtime re-adopts it) and close when it exits, so a failed primary lets go of its addresses
as a node does.

They live in the control plane's process: while no runtime runs, preferred-mode nodes keep
running but their port is closed, until a runtime adopts them again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence

from engine.proxy.hub import ProxyHub
from engine.proxy.tcp import ProxyError
from engine.runtime.base import RuntimeError_

__all__ = ["Frontends", "free_ports"]


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

    def open(self, name: str, addresses: Sequence[str], port: int, host: str, backend: tuple[int, int]) -> None:
        """Forward `address:port` for each of `addresses` to the node's plain and TLS ports on
        `host`; forwarders on addresses no longer listed close. Raises RuntimeError_."""
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
                    hub.add_tls_sniffer(f"{name}@{address}", address, port, (host, backend[0]), (host, backend[1]))
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
