"""A server-sent-events reader for tests: reads GET <path> on a thread and keeps every message.

It speaks HTTP/1.0 over its own socket, so the body is the bare event stream (no chunking), and
`close` ends the read at once by shutting the socket down, however long the server stays quiet."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.eventually import eventually


@dataclass
class Message:
    event: str
    data: Any  # the JSON payload
    id: str | None = None


@dataclass
class SseReader:
    url: str  # http://127.x.y.z:port/path?query
    messages: list[Message] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ended: bool = False  # the server ended the stream

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.hostname.startswith("127."), self.url
        self._sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
        self._sock.settimeout(None)  # quiet streams are normal; close() ends the read
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n"
                           .encode())
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_connected(self, timeout: float = 10) -> None:
        """Until the server said it subscribed us (its first comment)."""
        eventually(lambda: "connected" in self.snapshot_comments(), timeout, message=f"stream {self.url} opened")

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def snapshot_comments(self) -> list[str]:
        with self._lock:
            return list(self.comments)

    def of(self, event: str) -> list[Any]:
        return [m.data for m in self.snapshot() if m.event == event]

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the server may have closed it already
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._sock.close()

    def _read(self) -> None:
        buffer = b""
        head_done = False
        event: dict[str, str] = {}
        data: list[str] = []
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self.ended = True
                return
            buffer += chunk
            if not head_done:
                if b"\r\n\r\n" not in buffer:
                    continue
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                with self._lock:
                    self.status = int(lines[0].split()[1])
                    self.headers = {k.strip().lower(): v.strip() for k, _, v in
                                    (line.partition(":") for line in lines[1:])}
                head_done = True
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("utf-8").rstrip("\r")
                if line == "":
                    if data:
                        with self._lock:
                            self.messages.append(Message(event.get("event", "message"), json.loads("\n".join(data)),
                                                         event.get("id")))
                    event, data = {}, []
                elif line.startswith(":"):
                    with self._lock:
                        self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    else:
                        event[name] = value
