"""The memcached configuration endpoint: auto discovery answered here, all else sent to a node.

Wire format of the answer (checked against the AWS cluster client for libmemcached, which reads
`CONFIG` exactly like `VALUE`: <bytes> bytes of data, then CRLF, then END):

    CONFIG cluster 0 <bytes>\r\n
    <version>\n
    <hostname>|<ip>|<port> <hostname>|<ip>|<port>\n
    \r\n
    END\r\n

<bytes> counts the payload `<version>\n<list>\n`. Old clients send `get AmazonElastiCache:cluster`
and get the same payload as a memcached value. The binary protocol has the same command
(opcode 0x60, key `cluster`; the answer carries 4 bytes of flags in its extras).

With `tls` (a cluster with in-transit encryption: its nodes speak TLS only) the endpoint speaks
TLS only too, with a certificate for its address, and reaches the nodes over TLS, checking their
certificates against the CA. It terminates TLS: it must read the commands.

Every other command is passed to one member node over a connection of its own, so the endpoint
behaves like a node. Commands are parsed only far enough to find their boundaries (storage
commands carry a data block), so a `config get cluster` in the middle of ordinary traffic is
answered in order: if commands are still on their way to the node, a no-op whose answer is
recognisable (`version` / binary NOOP) is sent after them, and the configuration is written to
the client in the place of that no-op's answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from collections.abc import Iterable, Sequence

from engine.access import server_context
from engine.proxy.memcached_wire import (
    REQUEST_MAGIC,
    Answer,
    BinaryRequestParser,
    BinaryResponseScanner,
    Continuation,
    Member,
    TextRequestParser,
    TextResponseScanner,
    config_payload,
)
from engine.proxy.tcp import BUFFER_SIZE, Listener, half_close, open_stream
from engine.security import TlsFiles

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The endpoint


class MemcachedConfigEndpoint(Listener):
    kind = "memcached configuration endpoint"

    def __init__(self, host: str, port: int, members: Sequence[Member] = (), tls: TlsFiles | None = None) -> None:
        super().__init__(host, port)
        self.ssl_context = server_context(tls) if tls is not None else None
        self.node_tls = ssl.create_default_context(cafile=tls.ca_file) if tls is not None else None
        # Version 0 means "no members yet": the first membership a client can see is version 1.
        self.version = 0
        self.members: tuple[Member, ...] = ()
        self.payload = config_payload(0, ())
        self._connections: set[_Connection] = set()
        self.set_members(members)

    def set_members(self, members: Iterable[Member]) -> bool:
        """Publish a membership; returns whether it changed (and the version went up)."""
        new = tuple(dict.fromkeys(members))
        if frozenset(new) == frozenset(self.members):
            return False
        self.version += 1
        self.members = new
        self.payload = config_payload(self.version, new)
        # Connections forwarding to a node that left are closed, as they would be by the node:
        # the client reconnects and gets a current member.
        for conn in list(self._connections):
            if conn.member is not None and conn.member not in new:
                conn.drop()
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)


class _Connection:
    def __init__(
        self, endpoint: MemcachedConfigEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer
        self.member: Member | None = None
        self._node_writer: asyncio.StreamWriter | None = None
        self._responses: asyncio.Task[None] | None = None
        # One entry per marker answer expected from the node, in order: None for a client's own
        # `version`/NOOP (passed through), or the reply to write in place of our sentinel's answer.
        self._markers: collections.deque[bytes | None] = collections.deque()
        self._node_gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parser: TextRequestParser | BinaryRequestParser | None = None

    def drop(self) -> None:
        if self._node_writer is not None:
            self._node_writer.close()
        if not self._node_gone.done():
            self._node_gone.set_result(None)

    async def run(self) -> None:
        requests = asyncio.create_task(self._serve_requests())
        try:
            done, _ = await asyncio.wait({requests, self._node_gone}, return_when=asyncio.FIRST_COMPLETED)
            if requests in done:
                requests.result()
                if self._responses is not None and self._node_writer is not None:
                    # Client EOF: pass it on and let the node's last answers through.
                    half_close(self._node_writer)
                    await asyncio.wait({self._responses, self._node_gone})
        finally:
            for task in (requests, self._responses):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self._node_writer is not None:
                self._node_writer.close()

    async def _connect(self) -> None:
        for member in self.endpoint.members:
            try:
                node_reader, node_writer = await open_stream(member.address, member.port, self.endpoint.node_tls)
            except (OSError, TimeoutError) as exc:
                log.info("config endpoint: node %s:%d unreachable: %s", member.address, member.port, exc)
                continue
            if member not in self.endpoint.members:  # left while we were connecting
                node_writer.close()
                continue
            self.member = member
            self._node_writer = node_writer
            binary = isinstance(self._parser, BinaryRequestParser)
            scanner = BinaryResponseScanner() if binary else TextResponseScanner()
            self._responses = asyncio.create_task(self._serve_responses(node_reader, scanner))
            self._responses.add_done_callback(self._responses_ended)
            return

    def _responses_ended(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, ConnectionError):
            log.warning("config endpoint: forwarding answers failed: %r", exc)
        self.drop()

    async def _serve_requests(self) -> None:
        discarding = False  # dropping the rest of a command no node could take
        while data := await self.reader.read(BUFFER_SIZE):
            if self._parser is None:
                payload = self._current_payload
                binary = data[0] == REQUEST_MAGIC
                self._parser = BinaryRequestParser(payload) if binary else TextRequestParser(payload)
            to_node = bytearray()
            to_client = bytearray()
            for request in self._parser.feed(data):
                if isinstance(request, Continuation):
                    if not discarding:
                        to_node += request.data
                elif isinstance(request, Answer):
                    discarding = False
                    if self._node_writer is None:
                        to_client += request.reply
                    else:
                        self._markers.append(request.reply)
                        to_node += self._parser.sentinel
                else:
                    discarding = False
                    if self._node_writer is None:
                        if request.quit:
                            self.writer.write(to_client)
                            return
                        # Answers so far go out before any node could answer anything.
                        self.writer.write(to_client)
                        to_client.clear()
                        await self._connect()
                        if self._node_writer is None:
                            to_client += request.unavailable
                            discarding = True
                            continue
                    if request.marker:
                        self._markers.append(None)
                    to_node += request.data
            if to_client:
                self.writer.write(to_client)
                await self.writer.drain()
            if to_node and self._node_writer is not None:
                self._node_writer.write(to_node)
                await self._node_writer.drain()

    def _current_payload(self) -> bytes:
        return self.endpoint.payload

    async def _serve_responses(
        self, node_reader: asyncio.StreamReader, scanner: TextResponseScanner | BinaryResponseScanner
    ) -> None:
        while data := await node_reader.read(BUFFER_SIZE):
            out = bytearray()
            for is_marker, chunk in scanner.feed(data):
                if is_marker and self._markers:
                    reply = self._markers.popleft()
                    out += chunk if reply is None else reply
                else:
                    out += chunk
            self.writer.write(out)
            await self.writer.drain()
