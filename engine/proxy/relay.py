"""Copying bytes both ways between two connections at the transport level, for a front that
read the start of a conversation with asyncio streams (the IAM authenticator) and has nothing
more to read in it.

Streams cost a task wake-up, a buffer copy and a drain per chunk and direction; here a chunk
is written to the other transport from the `data_received` callback, nothing else (the
authenticator's throughput went from about 0.3x of direct access to the figures in bench/iam.py).
Flow control as asyncio's own: when one side's write buffer is over its high-water mark, the
other side stops being read until it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

__all__ = ["relay"]


class _Side(asyncio.Protocol):
    """One connection's protocol: what it receives goes to `peer`'s transport."""

    def __init__(self, own: asyncio.Transport, done: asyncio.Future[None]) -> None:
        self.own = own
        self.peer: _Side | None = None
        self.done = done
        self.closed = False
        self.eof = False

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.own.write(data)

    def eof_received(self) -> bool:
        # Pass the half-close on (a client that sends and then shuts its side down still gets
        # its answers) and keep this side open for them, where both transports can (plain TCP;
        # asyncio's TLS transports close on EOF: then this side closes, and the other with it).
        assert self.peer is not None
        self.eof = True
        if self.peer.eof:  # both sides are done sending: nothing more can come either way
            self.peer.own.close()
            return False
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            if self.own.can_write_eof() and self.peer.own.can_write_eof() and not self.peer.own.is_closing():
                self.peer.own.write_eof()
                return True
        return False

    def pause_writing(self) -> None:
        assert self.peer is not None
        self.peer.own.pause_reading()

    def resume_writing(self) -> None:
        assert self.peer is not None
        with contextlib.suppress(RuntimeError):
            self.peer.own.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        assert self.peer is not None
        if not self.peer.closed:
            self.peer.own.close()
        elif not self.done.done():
            self.done.set_result(None)


def _buffered(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """What `reader` holds unread, and whether it has seen EOF, taken out of it. CPython's
    StreamReader keeps them in `_buffer` and `_eof`: there is no public way to take the bytes
    without waiting for more."""
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray):
        raise RuntimeError("this asyncio StreamReader keeps no _buffer: relay() needs CPython's streams")
    data = bytes(buffer)
    buffer.clear()
    return data, reader.at_eof() or bool(getattr(reader, "_eof", False))


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                up_writer: asyncio.StreamWriter, *, to_upstream: bytes = b"") -> None:
    """Copy bytes between the client (reader, writer) and upstream (up_reader, up_writer) until
    both are closed; first `to_upstream` (read from the client, not yet sent) and whatever either
    reader still holds. Cancelled: closes both."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    # Read and write transports both (uvloop's are not asyncio.Transport subclasses: no isinstance).
    client_transport = cast(asyncio.Transport, writer.transport)
    up_transport = cast(asyncio.Transport, up_writer.transport)
    client = _Side(client_transport, done)
    upstream = _Side(up_transport, done)
    client.peer, upstream.peer = upstream, client
    if client_transport.is_closing() or up_transport.is_closing():  # one went while we were not looking
        client_transport.close()
        up_transport.close()
        return
    for transport in (client_transport, up_transport):
        transport.pause_reading()
    pending, client_eof = _buffered(reader)
    early, up_eof = _buffered(up_reader)
    client_transport.set_protocol(client)
    up_transport.set_protocol(upstream)
    try:
        if to_upstream or pending:
            up_transport.write(to_upstream + pending)
        if early:
            client_transport.write(early)
        if client_eof:
            client.eof_received()
        if up_eof:
            upstream.eof_received()
        for transport, eof in ((client_transport, client_eof), (up_transport, up_eof)):
            if not eof:
                transport.resume_reading()
        await done
    finally:
        for transport in (client_transport, up_transport):
            transport.close()
