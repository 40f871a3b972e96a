"""A small memcached binary-protocol client with SASL PLAIN, for tests (pymemcache speaks no SASL):
one connection, request() -> (status, value)."""

from __future__ import annotations

import socket
import ssl
import struct

HEADER = struct.Struct(">BBHBBHIIQ")
GET, SET, SASL_AUTH = 0x00, 0x01, 0x21
AUTH_ERROR = 0x20
NO_FLAGS_NO_EXPIRY = struct.pack(">II", 0, 0)  # the extras of a SET


class Binary:
    """One binary-protocol connection to host:port (TLS with `context`)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection((host, port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname=host) if context else raw

    def request(self, opcode: int, key: bytes = b"", value: bytes = b"", extras: bytes = b"") -> tuple[int, bytes]:
        body = len(extras) + len(key) + len(value)
        self.sock.sendall(HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, body, 0, 0) + extras + key + value)
        header = self._read(HEADER.size)
        _, _, key_len, extras_len, _, status, body_len, _, _ = HEADER.unpack(header)
        data = self._read(body_len)
        return status, data[extras_len + key_len:]

    def login(self, user: str, password: str) -> int:
        return self.request(SASL_AUTH, b"PLAIN", f"\0{user}\0{password}".encode())[0]

    def set(self, key: bytes, value: bytes) -> int:
        return self.request(SET, key, value, extras=NO_FLAGS_NO_EXPIRY)[0]

    def get(self, key: bytes) -> tuple[int, bytes]:
        return self.request(GET, key)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the node closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()
