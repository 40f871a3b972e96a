"""TLS and plain text on one port: the forwarder in front of a node in TLS mode "preferred".

AWS's transitional mode accepts TLS and plain-text clients on the same endpoint port, which
redis and valkey cannot do (one listener, one protocol; `port` and `tls-port` must differ). So
the node listens on two ports of its own address, and this forwarder holds the node's port:
it reads a connection's first byte (every client of these protocols speaks first) and pumps
the connection to the node's TLS port when it is 0x16 (a TLS handshake record: the
ClientHello), else to its plain port. TLS stays end to end: the node terminates it.

It costs what any userspace forwarder costs (see bench/): it is for the transition only;
mode "required" has the node on its port with nothing in between.
"""

from __future__ import annotations

import asyncio
import logging

from engine.proxy.tcp import Listener, open_stream, splice

__all__ = ["TLS_HANDSHAKE", "SniffingForwarder"]

log = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16  # the content type of a TLS record that starts a handshake
FIRST_BYTE_TIMEOUT = 30.0  # a connection that says nothing for this long is closed


class SniffingForwarder(Listener):
    """Pumps each connection to `plain` or `tls` (host, port) by its first byte."""

    kind = "tls sniffer"

    def __init__(self, host: str, port: int, plain: tuple[str, int], tls: tuple[str, int]) -> None:
        super().__init__(host, port)
        self.plain = plain
        self.tls = tls

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await asyncio.wait_for(reader.read(1), FIRST_BYTE_TIMEOUT)
        if not first:
            return
        target = self.tls if first[0] == TLS_HANDSHAKE else self.plain
        try:
            up_reader, up_writer = await open_stream(*target)
        except (OSError, TimeoutError) as exc:
            log.info("tls sniffer %s:%d: cannot reach %s:%d: %s", self.host, self.port, *target, exc)
            return
        up_writer.write(first)
        await splice(reader, writer, up_reader, up_writer)
