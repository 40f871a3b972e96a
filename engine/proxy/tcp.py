"""Listening sockets on the hub's event loop, and the plain L4 forwarder.

Everything here runs on the `ProxyHub` loop thread; nothing in this module is thread safe.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
import ssl

log = logging.getLogger(__name__)

BUFFER_SIZE = 64 * 1024
CONNECT_TIMEOUT = 2.0


class ProxyError(Exception):
    """A proxy endpoint could not be created or changed."""


class BindError(ProxyError):
    """The listening address of an endpoint could not be bound."""


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    # Cache protocols are request/response with small messages: Nagle would add 40 ms stalls.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def half_close(writer: asyncio.StreamWriter) -> None:
    """Pass an EOF on (so `printf 'cmd' | nc` style clients still get their answers)."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


async def open_stream(host: str, port: int, tls: ssl.SSLContext | None = None) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to host:port (over TLS with `tls`, the certificate checked for `host`)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=BUFFER_SIZE, ssl=tls, server_hostname=host if tls else None),
        CONNECT_TIMEOUT,
    )
    set_nodelay(writer)
    return reader, writer


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until EOF, then half-close the destination."""
    while data := await reader.read(BUFFER_SIZE):
        writer.write(data)
        await writer.drain()
    half_close(writer)


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                 up_writer: asyncio.StreamWriter) -> None:
    """Pump a client connection and its upstream connection both ways; closes the upstream."""
    tasks = {asyncio.create_task(pump(reader, up_writer)), asyncio.create_task(pump(up_reader, writer))}
    try:
        # Both directions end on EOF (half-closes are passed on); an error in one ends both.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        up_writer.close()


class Listener(abc.ABC):
    """One listening socket and the connections it accepted."""

    kind = "listener"
    # A server context: the listener speaks TLS (the IAM authenticator in front of a TLS cache).
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @abc.abstractmethod
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection; the caller closes `writer` afterwards."""

    async def start(self) -> None:
        try:
            # SO_REUSEADDR: an address freed by remove() can be bound again at once even with
            # connections in TIME_WAIT; it never lets two listeners share one address on Linux.
            self._server = await asyncio.start_server(
                self._accepted, self.host, self.port, reuse_address=True, limit=BUFFER_SIZE, ssl=self.ssl_context
            )
        except OSError as exc:
            raise BindError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                "another process may hold this address, or the address is not local"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        set_nodelay(writer)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # Cancelled by close()/drop_connections(). End normally: asyncio 3.11's callback for
            # connection tasks calls task.exception(), which raises on a cancelled task.
            pass
        except Exception:
            log.exception("%s %s:%d: connection handler failed", self.kind, self.host, self.port)
        finally:
            self._handlers.discard(task)
            writer.close()

    def drop_connections(self) -> None:
        for task in list(self._handlers):
            task.cancel()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class TcpForwarder(Listener):
    """Pumps bytes both ways between each client and the current target.

    `set_target` changes where new connections go; existing ones stay on their target unless
    asked to be dropped (a failed-over primary that is still alive must not keep clients).
    """

    kind = "tcp forwarder"

    def __init__(self, host: str, port: int, target: tuple[str, int] | None) -> None:
        super().__init__(host, port)
        self.target = target

    def set_target(self, target: tuple[str, int] | None, *, drop_existing: bool = False) -> None:
        self.target = target
        if drop_existing:
            self.drop_connections()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.target
        if target is None:
            return
        try:
            up_reader, up_writer = await open_stream(*target)
        except (OSError, TimeoutError) as exc:
            log.info("tcp forwarder %s:%d: cannot reach %s:%d: %s", self.host, self.port, *target, exc)
            return
        await splice(reader, writer, up_reader, up_writer)
