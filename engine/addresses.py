"""Node addresses: an own loopback address per node on the engine's standard port, as on the
managed service, or 127.0.0.1 with a port from a range where that cannot be had.

Linux routes all of 127.0.0.0/8 to the loopback device, so 127.0.x.y needs no set-up; macOS
only answers on 127.0.0.1 unless aliases are added (`sudo ifconfig lo0 alias 127.0.100.1`),
hence `loopback_aliases_work()` for choosing the mode automatically.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Literal

from engine.runtime.base import NodeConfig, RuntimeError_

__all__ = [
    "DEFAULT_NETWORK",
    "DEFAULT_PORT_RANGE",
    "AddressAllocator",
    "AddressMode",
    "bind_error",
    "can_bind",
    "check_bindable",
    "loopback_aliases_work",
]

AddressMode = Literal["loopback", "ports"]

DEFAULT_NETWORK = "127.0.100.0/22"
DEFAULT_PORT_RANGE = (30000, 30999)
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def bind_error(host: str, port: int) -> int | None:
    """None when (host, port) can be bound right now, else the errno."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As the servers do: TIME_WAIT leftovers of a previous node must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        return exc.errno or errno.EADDRINUSE
    finally:
        sock.close()
    return None


def check_bindable(config: NodeConfig) -> None:
    """Raise RuntimeError_ saying why node `config` could not listen on its address now. The
    runtimes call it before they start a node: a taken address is the common failure, and this
    sees it at once, where the node itself would only fail after its start."""
    error = bind_error(config.host, config.port)
    if error is None:
        return
    where = f"{config.host}:{config.port}"
    if error == errno.EADDRINUSE:
        raise RuntimeError_(
            f"cannot start node {config.name}: {where} is already in use by another process", temporary=True
        )
    if error == errno.EADDRNOTAVAIL:
        raise RuntimeError_(
            f"cannot start node {config.name}: {config.host} is not an address of this machine "
            "(macOS needs `sudo ifconfig lo0 alias <address>`; or use 'ports' node addressing)",
            temporary=False,
        )
    raise RuntimeError_(f"cannot start node {config.name}: cannot listen on {where}: {os.strerror(error)}")


def can_bind(host: str, port: int) -> bool:
    """Whether a server could listen on (host, port) right now (port 0: any port on host)."""
    return bind_error(host, port) is None


def loopback_aliases_work(address: str = "127.0.100.1") -> bool:
    """Whether this machine answers on loopback addresses other than 127.0.0.1 (Linux: yes;
    macOS: only with aliases). The control plane falls back to "ports" mode when not."""
    return can_bind(address, 0)


class AddressAllocator:
    """Hands out (host, port) pairs for new nodes. Thread-safe.

    mode "loopback": each node gets its own address from `network` (host parts .0 and .255 and
    127.0.0.1 are never used) on the port it asks for (6379, 11211, or the user's port).
    mode "ports": every node is on `ports_host` (127.0.0.1) with a port from `port_range`
    (inclusive); the wanted port is ignored since one port cannot serve every node.

    An address handed out is also skipped for `hold_seconds` (or until `release`), so two
    nodes allocated concurrently, before either has started, do not get the same one.
    """

    def __init__(
        self,
        mode: AddressMode = "loopback",
        *,
        network: str = DEFAULT_NETWORK,
        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        ports_host: str = "127.0.0.1",
        hold_seconds: float = 60.0,
        bind_check: Callable[[str, int], int | None] = bind_error,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("loopback", "ports"):
            raise ValueError(f"unknown address mode {mode!r}: use 'loopback' or 'ports'")
        net = ipaddress.IPv4Network(network, strict=False)
        if not net.subnet_of(_LOOPBACK):
            raise ValueError(f"network {network} is not inside 127.0.0.0/8: nodes only listen on loopback")
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid port range {low}-{high}")
        if not ipaddress.IPv4Address(ports_host).is_loopback:
            raise ValueError(f"ports_host {ports_host} is not a loopback address")
        self.mode: AddressMode = mode
        self.network = net
        self.port_range = (low, high)
        self.ports_host = ports_host
        self._hold_seconds = hold_seconds
        self._bind_error = bind_check
        self._clock = clock
        self._held: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def hosts(self) -> Iterator[str]:
        """The loopback-mode addresses, in allocation order."""
        for address in self.network:
            last = int(address) & 0xFF
            if last in (0, 255) or str(address) == "127.0.0.1":
                continue
            yield str(address)

    def allocate(self, wanted_port: int | None, in_use: Collection[tuple[str, int]]) -> tuple[str, int]:
        """The first (host, port) not in `in_use`, not recently handed out, and bindable now.
        Raises RuntimeError_(temporary=False) when there is none. In loopback mode
        `wanted_port` is required."""
        with self._lock:
            now = self._clock()
            self._held = {a: t for a, t in self._held.items() if t > now}
            taken = set(in_use) | set(self._held)
            if self.mode == "loopback":
                if wanted_port is None:
                    raise ValueError("loopback addressing needs the node's port (6379, 11211 or the user's)")
                candidates: Iterator[tuple[str, int]] = ((h, wanted_port) for h in self.hosts())
            else:
                low, high = self.port_range
                candidates = ((self.ports_host, p) for p in range(low, high + 1))
            errors: dict[int, int] = {}
            for candidate in candidates:
                if candidate in taken:
                    continue
                error = self._bind_error(*candidate)
                if error is None:
                    self._held[candidate] = now + self._hold_seconds
                    return candidate
                errors[error] = errors.get(error, 0) + 1
            raise RuntimeError_(self._exhausted_message(wanted_port, errors), temporary=False)

    def release(self, host: str, port: int) -> None:
        """Forget that (host, port) was handed out (its node was deleted or failed to start)."""
        with self._lock:
            self._held.pop((host, port), None)

    def _exhausted_message(self, wanted_port: int | None, errors: dict[int, int]) -> str:
        if self.mode == "ports":
            low, high = self.port_range
            where = f"no free port in {low}-{high} on {self.ports_host}"
            hint = "widen the port range setting or delete unused nodes"
        else:
            where = f"no free address in {self.network} for port {wanted_port}"
            hint = "use a larger loopback network setting or delete unused nodes"
        if errors.get(errno.EADDRNOTAVAIL):
            hint = (
                "this machine does not answer on extra loopback addresses (macOS needs "
                "`sudo ifconfig lo0 alias <address>`); switch node addressing to 'ports'"
            )
        elif (
            errors.get(errno.EADDRINUSE) and self.mode == "loopback" and not any(e != errno.EADDRINUSE for e in errors)
        ):
            hint = (
                f"port {wanted_port} is taken on every address (is a server listening on "
                f"0.0.0.0:{wanted_port}?); stop it or switch node addressing to 'ports'"
            )
        return f"{where}: {hint}"
