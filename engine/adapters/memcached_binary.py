"""memcached's binary protocol, as far as the engine needs it on a node with SASL on (`-S`):
there the text protocol is off, and every connection authenticates first (SASL PLAIN as the
service's admin user). The probe and `stats` pipeline the authentication with their request in
one write, so SASL adds no round trip.

Packets: a 24-byte header (magic, opcode, key length, extras length, data type, vbucket or
status, total body length, opaque, cas), then extras, key and value.
"""

from __future__ import annotations

import socket
import struct
import time

from engine.access import Reach, receive

__all__ = ["SaslRefused", "sasl_stats", "sasl_version"]

_HEADER = struct.Struct(">BBHBBHIIQ")
_REQUEST, _RESPONSE = 0x80, 0x81
_VERSION, _STAT, _SASL_AUTH = 0x0B, 0x10, 0x21
_AUTH_ERROR = 0x20
_MAX_BODY = 1 << 20


class SaslRefused(ValueError):
    """The node refused the credentials (status 0x20, "Auth failure")."""


def _request(opcode: int, key: bytes = b"", value: bytes = b"") -> bytes:
    return _HEADER.pack(_REQUEST, opcode, len(key), 0, 0, 0, len(key) + len(value), 0, 0) + key + value


def _auth(reach: Reach) -> bytes:
    user, password = reach.username or "", reach.password or ""
    return _request(_SASL_AUTH, b"PLAIN", b"\0" + user.encode() + b"\0" + password.encode())


class _Replies:
    """Binary responses from a socket, every read bounded by one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buf = bytearray()

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += receive(self._sock, self._deadline)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def next(self) -> tuple[int, int, bytes, bytes]:
        """(opcode, status, key, value) of the next response."""
        magic, opcode, key_len, extras_len, _, status, body_len, _, _ = _HEADER.unpack(self._exact(_HEADER.size))
        if magic != _RESPONSE or body_len > _MAX_BODY or key_len + extras_len > body_len:
            raise ConnectionError(f"not a memcached binary response (magic {magic:#x})")
        body = self._exact(body_len)
        return opcode, status, body[extras_len:extras_len + key_len], body[extras_len + key_len:]


def _authenticated(reach: Reach, request: bytes, timeout: float) -> tuple[socket.socket, _Replies]:
    """A connection that sent AUTH + `request` in one write and read AUTH's reply; raises
    SaslRefused, OSError or ValueError."""
    deadline = time.monotonic() + timeout
    sock = reach.connect(timeout)
    try:
        sock.sendall(_auth(reach) + request)
        replies = _Replies(sock, deadline)
        _, status, _, value = replies.next()
        if status == _AUTH_ERROR:
            raise SaslRefused(f"SASL authentication as {reach.username!r} refused: {value.decode('utf-8', 'replace')}")
        if status != 0:
            raise ValueError(f"SASL authentication failed with status {status:#x}")
    except BaseException:
        sock.close()
        raise
    return sock, replies


def sasl_version(reach: Reach, timeout: float) -> str:
    """The node's version, after authenticating; raises SaslRefused, OSError or ValueError."""
    sock, replies = _authenticated(reach, _request(_VERSION), timeout)
    with sock:
        _, status, _, value = replies.next()
    if status != 0:
        raise ValueError(f"version failed with status {status:#x}")
    return value.decode("utf-8", "replace").strip()


def sasl_stats(reach: Reach, timeout: float) -> dict[str, str]:
    """`stats` over the binary protocol (one response per counter, an empty key ends them)."""
    sock, replies = _authenticated(reach, _request(_STAT), timeout)
    fields: dict[str, str] = {}
    with sock:
        while True:
            _, status, key, value = replies.next()
            if status != 0:
                raise ValueError(f"stats failed with status {status:#x}")
            if not key:
                return fields
            fields[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
