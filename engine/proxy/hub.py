"""ProxyHub: every userspace endpoint of the control plane on one event loop in one thread.

The rest of the control plane is threads (reconciler workers) and its own loop (the API); the
hub keeps its sockets off both. Its public methods are called from any other thread: each runs
a coroutine on the hub's loop and waits for it, so when a call returns the listener is bound,
the membership is published, or the address is free again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from engine.proxy.iam_auth import IamAuthenticator
from engine.proxy.memcached_config import MemcachedConfigEndpoint
from engine.proxy.memcached_wire import Member
from engine.proxy.sniff import SniffingForwarder
from engine.proxy.tcp import BindError, Listener, ProxyError, TcpForwarder
from engine.security import TlsFiles

__all__ = ["BindError", "Member", "ProxyError", "ProxyHub"]

log = logging.getLogger(__name__)

T = TypeVar("T")
L = TypeVar("L", bound=Listener)


class TcpForwarders(Protocol):
    """An out-of-process pool of L4 forwarders (engine.proxy.haproxy.HaproxyForwarders)."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def add(self, name: str, host: str, port: int, target: tuple[str, int] | None) -> None: ...

    def set_target(self, name: str, target: tuple[str, int] | None, *, drop_existing: bool = False) -> None: ...

    def remove(self, name: str) -> None: ...

    def has(self, name: str) -> bool: ...

    def address(self, name: str) -> tuple[str, int]: ...


class ProxyHub:
    """Memcached configuration endpoints, and TCP forwarders: on the hub's loop, or handed to an
    external pool (HAProxy) when one is given."""

    def __init__(self, *, call_timeout: float = 10.0, tcp: TcpForwarders | None = None,
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop) -> None:
        self._call_timeout = call_timeout
        # uvloop.new_event_loop: its TLS is compiled where asyncio's runs Python per record (bench/iam.py).
        self._loop_factory = loop_factory
        self._tcp = tcp
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._endpoints: dict[str, Listener] = {}  # touched only on the hub's loop

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            loop = self._loop_factory()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            thread = threading.Thread(target=run, name="proxy-hub", daemon=True)
            thread.start()
            if not ready.wait(self._call_timeout):
                raise ProxyError("the proxy hub's event loop did not start")
            self._loop, self._thread = loop, thread
            if self._tcp is not None:
                self._tcp.start()

    def close(self) -> None:
        """Close every listener and connection and stop the loop thread. Safe to repeat."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                try:
                    if self._tcp is not None:
                        self._tcp.close()
                finally:
                    self._run(loop, self._close_all)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(self._call_timeout)
                self._loop = self._thread = None

    def __enter__(self) -> ProxyHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------------------------

    def add_memcached_config_endpoint(
        self, name: str, host: str, port: int, members: Sequence[Member] = (), tls: TlsFiles | None = None
    ) -> None:
        """Listen on host:port as a memcached configuration endpoint (raises BindError; OSError
        when `tls`'s files cannot be read). `tls`: it speaks TLS only, and to its nodes too.

        Adding the same name again with the same address only publishes `members` (if given).
        """
        members = tuple(members)

        async def add() -> None:
            def new() -> MemcachedConfigEndpoint:
                return MemcachedConfigEndpoint(host, port, members, tls)

            endpoint = await self._add(name, host, port, MemcachedConfigEndpoint, new)
            if members:
                endpoint.set_members(members)

        self._call(add)

    def add_tcp_forwarder(self, name: str, host: str, port: int, target: tuple[str, int] | None) -> None:
        """Listen on host:port and pump each connection to `target` (raises BindError)."""
        if self._tcp is not None:
            self._tcp.add(name, host, port, target)
            return

        async def add() -> None:
            def new() -> TcpForwarder:
                return TcpForwarder(host, port, target)

            forwarder = await self._add(name, host, port, TcpForwarder, new)
            forwarder.set_target(target)

        self._call(add)

    def add_tls_sniffer(self, name: str, host: str, port: int, plain: tuple[str, int], tls: tuple[str, int]) -> None:
        """Listen on host:port and pump each connection to `tls` when it opens with a TLS
        handshake, else to `plain` (engine.proxy.sniff; raises BindError). Always on this loop."""

        async def add() -> None:
            def new() -> SniffingForwarder:
                return SniffingForwarder(host, port, plain, tls)

            sniffer = await self._add(name, host, port, SniffingForwarder, new)
            sniffer.plain, sniffer.tls = plain, tls

        self._call(add)

    def add_iam_authenticator(self, name: str, host: str, port: int, make: Callable[[], IamAuthenticator]) -> None:
        """Listen on host:port with the IAM authenticator `make()` builds (engine.proxy.iam_auth;
        raises BindError). Adding the same name again takes the new one's backend, verifier and
        passwords for new connections; existing ones stay as they are."""

        async def add() -> None:
            made = make()
            front = await self._add(name, host, port, IamAuthenticator, lambda: made)
            front.backend, front.verify, front.password_of = made.backend, made.verify, made.password_of

        self._call(add)

    def names(self) -> list[str]:
        """The names of the endpoints on this hub's loop."""

        async def names() -> list[str]:
            return sorted(self._endpoints)

        return self._call(names)

    def set_members(self, name: str, members: Sequence[Member]) -> None:
        """Publish the nodes of a configuration endpoint; the version goes up if the set changed."""
        members = tuple(members)

        async def set_() -> None:
            self._get(name, MemcachedConfigEndpoint).set_members(members)

        self._call(set_)

    def set_target(self, name: str, target: tuple[str, int] | None, *, drop_existing: bool = False) -> None:
        """Send new connections of a forwarder to `target` (None: refuse them)."""
        if self._tcp is not None:
            self._tcp.set_target(name, target, drop_existing=drop_existing)
            return

        async def set_() -> None:
            self._get(name, TcpForwarder).set_target(target, drop_existing=drop_existing)

        self._call(set_)

    def remove(self, name: str) -> None:
        """Close an endpoint, its connections and its listening socket. Unknown names are ignored."""
        if self._tcp is not None and self._tcp.has(name):
            self._tcp.remove(name)
            return

        async def remove() -> None:
            endpoint = self._endpoints.pop(name, None)
            if endpoint is not None:
                await endpoint.close()

        self._call(remove)

    def address(self, name: str) -> tuple[str, int]:
        """The bound address of an endpoint (the actual port when it was added with port 0)."""
        if self._tcp is not None and self._tcp.has(name):
            return self._tcp.address(name)

        async def address() -> tuple[str, int]:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                raise ProxyError(f"no proxy endpoint named {name!r}")
            return endpoint.host, endpoint.port

        return self._call(address)

    def config_version(self, name: str) -> int:
        """The configuration version a memcached configuration endpoint currently serves."""

        async def version() -> int:
            return self._get(name, MemcachedConfigEndpoint).version

        return self._call(version)

    # -- on the loop ---------------------------------------------------------------------------

    async def _add(self, name: str, host: str, port: int, kind: type[L], factory: Callable[[], L]) -> L:
        existing = self._endpoints.get(name)
        if existing is not None:
            # Repeating an add (a reconciler retrying) is fine; a different endpoint is not.
            if isinstance(existing, kind) and existing.host == host and port in (0, existing.port):
                return existing
            raise ProxyError(
                f"endpoint {name!r} already exists as a {existing.kind} on {existing.host}:{existing.port}"
            )
        endpoint = factory()
        await endpoint.start()
        self._endpoints[name] = endpoint
        return endpoint

    def _get(self, name: str, kind: type[L]) -> L:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise ProxyError(f"no proxy endpoint named {name!r}")
        if not isinstance(endpoint, kind):
            raise ProxyError(f"endpoint {name!r} is a {endpoint.kind}, not a {kind.kind}")
        return endpoint

    async def _close_all(self) -> None:
        endpoints = list(self._endpoints.values())
        self._endpoints.clear()
        results = await asyncio.gather(*(e.close() for e in endpoints), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("closing a proxy endpoint failed: %r", result)

    # -- thread bridge -------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = self._loop
        if loop is None:
            raise ProxyError("the proxy hub is not running (call start() first)")
        return self._run(loop, fn)

    def _run(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if threading.current_thread() is self._thread:
            raise ProxyError("ProxyHub methods block; they cannot be called from the hub's own loop")
        coro = fn()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop closed under us (close() on another thread)
            coro.close()
            raise ProxyError("the proxy hub is not running") from None
        try:
            return future.result(self._call_timeout)
        except TimeoutError:
            future.cancel()
            raise ProxyError(f"the proxy hub did not answer within {self._call_timeout} s") from None
