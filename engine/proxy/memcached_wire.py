"""The memcached wire protocol, as far as the configuration endpoint needs it: the auto-discovery
answer (text and binary), and parsers that find the boundaries of requests and responses without
understanding more of them (see memcached_config for how they are used)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LEGACY_KEY = b"AmazonElastiCache:cluster"
NO_NODES = b"SERVER_ERROR no nodes available\r\n"
# Longest command line looked at as a whole; memcached's own limit for a key is 250 bytes, so
# only very long multi-key gets come near it, and those are passed on as they are.
MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Member:
    """One node listed by the configuration endpoint (and a candidate for forwarding)."""

    hostname: str
    ip: str
    port: int

    def __post_init__(self) -> None:
        for field_name, value in (("hostname", self.hostname), ("ip", self.ip)):
            if any(c in value for c in " |\r\n\t"):
                raise ValueError(f"member {field_name} {value!r} contains a space, '|' or a line break")
        if not self.hostname:
            raise ValueError("member hostname must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"member port {self.port} is out of range")

    @property
    def address(self) -> str:
        return self.ip or self.hostname


# ---------------------------------------------------------------------------------------------
# Formatting


def config_payload(version: int, members: Sequence[Member]) -> bytes:
    nodes = " ".join(f"{m.hostname}|{m.ip}|{m.port}" for m in members)
    return f"{version}\n{nodes}\n".encode()


def config_reply(payload: bytes) -> bytes:
    return b"CONFIG cluster 0 %d\r\n%s\r\nEND\r\n" % (len(payload), payload)


def legacy_value_reply(payload: bytes) -> bytes:
    return b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (LEGACY_KEY, len(payload), payload)


# Binary protocol (memcached protocol_binary.h)
REQUEST_MAGIC = 0x80
RESPONSE_MAGIC = 0x81
HEADER = struct.Struct(">BBHBBHLL8s")  # magic opcode keylen extlen datatype vbucket/status body opaque cas
OP_GET, OP_GETQ, OP_GETK, OP_GETKQ = 0x00, 0x09, 0x0C, 0x0D
OP_QUIT, OP_QUITQ, OP_NOOP = 0x07, 0x17, 0x0A
OP_CONFIG_GET = 0x60
STATUS_TEMPORARY_FAILURE = 0x86
_GET_OPS = frozenset({OP_GET, OP_GETQ, OP_GETK, OP_GETKQ})
_INTERCEPTED_OPS = _GET_OPS | {OP_CONFIG_GET}
NOOP_REQUEST = HEADER.pack(REQUEST_MAGIC, OP_NOOP, 0, 0, 0, 0, 0, 0, bytes(8))


def binary_response(
    opcode: int, opaque: int, *, status: int = 0, extras: bytes = b"", key: bytes = b"", value: bytes = b""
) -> bytes:
    body = len(extras) + len(key) + len(value)
    header = HEADER.pack(RESPONSE_MAGIC, opcode, len(key), len(extras), 0, status, body, opaque, bytes(8))
    return header + extras + key + value


# ---------------------------------------------------------------------------------------------
# Request parsing: what to answer here, what to forward, where each command starts


@dataclass(frozen=True, slots=True)
class Command:
    """The start of a command for a node. `marker`: its answer is one the response scanner
    counts (a client's own `version`/NOOP). `unavailable`: the answer when no node is reachable."""

    data: bytes
    unavailable: bytes
    marker: bool = False
    quit: bool = False


@dataclass(frozen=True, slots=True)
class Continuation:
    """More bytes of the current command (a data block, a binary body, an over-long line)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """A command answered by the endpoint itself."""

    reply: bytes


Request = Command | Continuation | Answer


class TextRequestParser:
    sentinel = b"version\r\n"

    def __init__(self, payload: Callable[[], bytes]) -> None:
        self._payload = payload
        self._buf = bytearray()
        self._remaining = 0  # bytes left in the current data block (CRLF included)
        self._in_long_line = False

    def feed(self, data: bytes) -> list[Request]:
        out: list[Request] = []
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while pos < end:
            if self._remaining:
                n = min(self._remaining, end - pos)
                out.append(Continuation(bytes(buf[pos : pos + n])))
                self._remaining -= n
                pos += n
                continue
            nl = buf.find(b"\n", pos)
            if self._in_long_line:
                stop = end if nl < 0 else nl + 1
                out.append(Continuation(bytes(buf[pos:stop])))
                self._in_long_line = nl < 0
                pos = stop
                continue
            if nl < 0:
                if end - pos > MAX_LINE:
                    # Not a command we need to understand (those are short): pass it on.
                    out.append(Command(bytes(buf[pos:end]), NO_NODES))
                    self._in_long_line = True
                    pos = end
                break
            out.append(self._command(bytes(buf[pos : nl + 1])))
            pos = nl + 1
        del buf[:pos]
        return out

    def _command(self, line: bytes) -> Request:
        tokens = line.split()
        name = tokens[0] if tokens else b""
        if name == b"config" and tokens[1:] == [b"get", b"cluster"]:
            return Answer(config_reply(self._payload()))
        if name == b"get" and tokens[1:] == [LEGACY_KEY]:
            return Answer(legacy_value_reply(self._payload()))
        # <cmd> <key> <flags> <exptime> <bytes> ...: memcached reads (or swallows) the data block
        # whenever <bytes> is a valid length, even when it refuses the item.
        storage = name in (b"set", b"add", b"replace", b"append", b"prepend", b"cas")
        if storage and len(tokens) >= 5 and tokens[4].isdigit():
            self._remaining = int(tokens[4]) + 2
        elif name == b"ms" and len(tokens) >= 3 and tokens[2].isdigit():  # ms <key> <datalen> <flags>*
            self._remaining = int(tokens[2]) + 2
        return Command(line, NO_NODES, marker=name == b"version", quit=name == b"quit")


class BinaryRequestParser:
    sentinel = NOOP_REQUEST

    def __init__(self, payload: Callable[[], bytes]) -> None:
        self._payload = payload
        self._buf = bytearray()
        self._remaining = 0
        self._raw = False  # lost framing (bad magic): pass everything on, the node will close

    def feed(self, data: bytes) -> list[Request]:
        out: list[Request] = []
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while pos < end:
            if self._raw or self._remaining:
                n = end - pos if self._raw else min(self._remaining, end - pos)
                out.append(Continuation(bytes(buf[pos : pos + n])))
                if not self._raw:
                    self._remaining -= n
                pos += n
                continue
            if end - pos < HEADER.size:
                break
            magic, opcode, keylen, extlen, _, _, body, opaque, _ = HEADER.unpack_from(buf, pos)
            if magic != REQUEST_MAGIC:
                self._raw = True
                out.append(Command(bytes(buf[pos:end]), b""))
                pos = end
                break
            if opcode in _INTERCEPTED_OPS and body <= MAX_LINE:
                # Small enough to look at as a whole.
                if end - pos < HEADER.size + body:
                    break
                packet = bytes(buf[pos : pos + HEADER.size + body])
                pos += len(packet)
                key = packet[HEADER.size + extlen : HEADER.size + extlen + keylen]
                out.append(self._packet(opcode, opaque, key, packet))
                continue
            out.append(
                Command(
                    bytes(buf[pos : pos + HEADER.size]),
                    self._unavailable(opcode, opaque),
                    marker=opcode == OP_NOOP,
                    quit=opcode in (OP_QUIT, OP_QUITQ),
                )
            )
            self._remaining = body
            pos += HEADER.size
        del buf[:pos]
        return out

    def _packet(self, opcode: int, opaque: int, key: bytes, packet: bytes) -> Request:
        flags = bytes(4)
        if opcode == OP_CONFIG_GET and key == b"cluster":
            return Answer(binary_response(opcode, opaque, extras=flags, value=self._payload()))
        if opcode in _GET_OPS and key == LEGACY_KEY:
            with_key = key if opcode in (OP_GETK, OP_GETKQ) else b""
            return Answer(binary_response(opcode, opaque, extras=flags, key=with_key, value=self._payload()))
        return Command(packet, self._unavailable(opcode, opaque))

    @staticmethod
    def _unavailable(opcode: int, opaque: int) -> bytes:
        return binary_response(opcode, opaque, status=STATUS_TEMPORARY_FAILURE, value=b"no nodes available")


# ---------------------------------------------------------------------------------------------
# Response scanning: find the answers to markers in what a node sends back


class TextResponseScanner:
    """Splits a node's text-protocol output into (is_marker_answer, bytes) runs."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._remaining = 0
        self._raw = False

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        if self._raw:
            return [(False, data)]
        out: list[tuple[bool, bytes]] = []
        buf = self._buf
        buf += data
        pos = start = 0
        end = len(buf)
        while pos < end:
            if self._remaining:
                n = min(self._remaining, end - pos)
                self._remaining -= n
                pos += n
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if end - pos > MAX_LINE:
                    self._raw = True
                    pos = end
                break
            if buf.startswith(b"VERSION", pos):
                if pos > start:
                    out.append((False, bytes(buf[start:pos])))
                out.append((True, bytes(buf[pos : nl + 1])))
                start = nl + 1
            elif buf.startswith(b"VALUE ", pos):
                parts = buf[pos:nl].split()
                if len(parts) >= 4 and parts[3].isdigit():
                    self._remaining = int(parts[3]) + 2
            elif buf.startswith(b"VA ", pos):
                parts = buf[pos:nl].split()
                if len(parts) >= 2 and parts[1].isdigit():
                    self._remaining = int(parts[1]) + 2
            pos = nl + 1
        if pos > start:
            out.append((False, bytes(buf[start:pos])))
        del buf[:pos]
        return out


class BinaryResponseScanner:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._remaining = 0
        self._raw = False

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        if self._raw:
            return [(False, data)]
        out: list[tuple[bool, bytes]] = []
        buf = self._buf
        buf += data
        pos = start = 0
        end = len(buf)
        while pos < end:
            if self._remaining:
                n = min(self._remaining, end - pos)
                self._remaining -= n
                pos += n
                continue
            if end - pos < HEADER.size:
                break
            magic, opcode, _, _, _, _, body, _, _ = HEADER.unpack_from(buf, pos)
            if magic != RESPONSE_MAGIC:
                self._raw = True
                pos = end
                break
            if opcode == OP_NOOP and body == 0:
                if pos > start:
                    out.append((False, bytes(buf[start:pos])))
                out.append((True, bytes(buf[pos : pos + HEADER.size])))
                start = pos + HEADER.size
            self._remaining = body
            pos += HEADER.size
        if pos > start:
            out.append((False, bytes(buf[start:pos])))
        del buf[:pos]
        return out


