"""RDB files of redis/valkey nodes: saving one from a running node, and checking one.

A save asks the node for what it gives a new replica: we connect as a replica would (AUTH,
`REPLCONF rdb-only 1`, `REPLCONF capa eof`, `SYNC`) and the node's fork child streams its RDB
to us. Nothing here depends on where the node runs (process, container, published port):
only its address. The node writes nothing to its own disk for it (diskless: we announce the EOF
form) and, with rdb-only (Redis 7.0+, Valkey), does not keep us as a replica afterwards; on
older versions it drops us when we close the connection right after the payload.

A replica serves SYNC as well (chained replication), so saves run on a group's replicas and
leave the primary alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from pathlib import Path

from engine.access import Reach
from engine.files import open_private

__all__ = ["EMPTY_RDB", "RdbError", "check_rdb", "save_rdb"]

_CHUNK = 1 << 20  # recv_into buffer: large reads keep the copy as fast as the node's own BGSAVE
_SYNC_EVERY = 8 << 20  # bytes between background fdatasyncs (redis's incremental fsync)
_MARK_LEN = 40  # the diskless form's end mark: `$EOF:<40 random bytes>\r\n ... <same 40 bytes>`
_LINE_MAX = 4096
_MAGIC = re.compile(rb"REDIS(\d{4})")
# The smallest valid file: magic, the EOF opcode and a zero CRC64 (zero: not checked at load).
# Version 6 is read by every redis >= 3.2 and valkey, so it fits whatever a node runs.
EMPTY_RDB = b"REDIS0006\xff" + bytes(8)


class RdbError(Exception):
    """An RDB could not be saved, or a file is not a usable RDB; the message says why."""


def save_rdb(reach: Reach, dest: Path, *, timeout: float = 600.0) -> int:
    """Save the RDB of the redis/valkey node `reach` leads to (engine.access: its address, TLS,
    and the user to authenticate as) as `dest`, written by the node itself (its replica full
    sync, diskless). Returns the file's size in bytes. The file appears complete or not at all
    (written as `<dest>.partial`, fsynced, renamed). Raises RdbError."""
    dest = Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    deadline = time.monotonic() + timeout
    where = reach.where
    try:
        sock = reach.connect(max(0.001, min(timeout, 10.0)))
    except OSError as exc:
        raise RdbError(f"cannot connect to {where}: {exc.strerror or exc}") from exc
    try:
        with sock, open_private(partial, "wb") as out, _Writer(out.fileno()) as writer:
            stream = _Stream(sock, deadline, where)
            _handshake(stream, reach.auth())
            size = stream.payload(writer)
        os.replace(partial, dest)
    except RdbError:
        _discard(partial)
        raise
    except TimeoutError as exc:
        _discard(partial)
        raise RdbError(f"saving the RDB of {where} timed out after {timeout:g} s") from exc
    except OSError as exc:
        _discard(partial)
        raise RdbError(f"saving the RDB of {where} failed: {exc.strerror or exc}") from exc
    except BaseException:
        _discard(partial)
        raise
    _fsync_dir(dest.parent)
    return size


def check_rdb(path: Path) -> None:
    """Raise RdbError saying why `path` is not a complete RDB file: missing, empty, not an RDB
    (magic `REDIS` + 4 digits), or cut short (from version 5 an RDB ends with the EOF opcode
    0xFF and an 8-byte CRC64). The checksum itself is not computed (a pure-Python CRC64 of a
    large file takes minutes): redis/valkey verify it at load and exit on a mismatch."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(9)
            if size >= 9:
                f.seek(-9, os.SEEK_END)
            tail = f.read(9)
    except FileNotFoundError:
        raise RdbError(f"no RDB file at {path}") from None
    except IsADirectoryError:
        raise RdbError(f"{path} is a directory, not an RDB file") from None
    except OSError as exc:
        raise RdbError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise RdbError(f"{path} is empty")
    found = _MAGIC.fullmatch(head)
    if found is None:
        raise RdbError(f"{path} is not an RDB file (it does not start with REDIS and a 4-digit version)")
    version = int(found.group(1))
    if version >= 5:
        # magic (9) + EOF opcode (1) + CRC64 (8): the smallest possible file.
        if size < 18 or tail[0] != 0xFF:
            raise RdbError(f"{path} is truncated: an RDB of version {version} ends with the EOF opcode "
                           f"and a checksum ({size} bytes)")
    elif size < 10 or tail[-1] != 0xFF:
        raise RdbError(f"{path} is truncated: an RDB of version {version} ends with the EOF opcode ({size} bytes)")


class _Stream:
    """The replication connection: lines, then the payload, every read bounded by the deadline."""

    def __init__(self, sock: socket.socket, deadline: float, where: str) -> None:
        self._sock = sock
        self._deadline = deadline
        self.where = where
        self._buf = bytearray(_CHUNK)
        self._view = memoryview(self._buf)
        self._start = 0  # unread bytes: _buf[_start:_end]
        self._end = 0

    def send(self, *args: str) -> None:
        self._sock.sendall(b"*%d\r\n" % len(args)
                           + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))

    def _fill(self) -> int:
        """Read more into the buffer (compacted first); the number of bytes read."""
        if self._start:
            self._buf[: self._end - self._start] = self._buf[self._start:self._end]
            self._end -= self._start
            self._start = 0
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._sock.settimeout(remaining)
        n = self._sock.recv_into(self._view[self._end:])
        if n == 0:
            raise RdbError(f"{self.where} closed the connection")
        self._end += n
        return n

    def line(self, *, skip_newlines: bool = False) -> bytes:
        """One reply line; `skip_newlines`: the primary's keepalive newlines before the payload."""
        while True:
            if skip_newlines:
                while self._start < self._end and self._buf[self._start] == 0x0A:
                    self._start += 1
            end = self._buf.find(b"\r\n", self._start, self._end)
            if end >= 0:
                found = bytes(self._buf[self._start:end])
                self._start = end + 2
                return found
            if self._end - self._start > _LINE_MAX:
                raise RdbError(f"{self.where} sent no reply line")
            self._fill()

    def payload(self, out: _Writer) -> int:
        """The RDB after SYNC, written to `fd`: `$<len>` (the node saved to disk first) or
        `$EOF:<mark>` (streamed). Returns its size."""
        header = self.line(skip_newlines=True)
        if header.startswith(b"-"):
            raise RdbError(f"{self.where} refused to send its RDB: {header[1:].decode('utf-8', 'replace')}")
        if header.startswith(b"+FULLRESYNC"):
            header = self.line(skip_newlines=True)
        if header.startswith(b"$EOF:") and len(header) == 5 + _MARK_LEN:
            return self._until_mark(out, header[5:])
        if not header.startswith(b"$") or not header[1:].isdigit():
            raise RdbError(f"{self.where} sent no RDB (reply {header[:60]!r})")
        return self._exactly(out, int(header[1:]))

    def _exactly(self, out: _Writer, size: int) -> int:
        left = size
        while left:
            if self._start == self._end:
                self._start = self._end = 0
                self._fill_or_short(size - left, size)
            n = min(left, self._end - self._start)
            out.write(self._view[self._start:self._start + n])
            self._start += n
            left -= n
        return size

    def _fill_or_short(self, got: int, size: int) -> None:
        try:
            self._fill()
        except RdbError:
            raise RdbError(f"{self.where} closed the connection after {got} of {size} bytes of its RDB") from None

    def _until_mark(self, out: _Writer, mark: bytes) -> int:
        """Write everything up to the mark; the last _MARK_LEN bytes seen are held back until
        more come, since they may be the mark. Nothing follows the mark: a diskless primary
        sends its replication stream only after the replica's first ACK, which never comes."""
        written = 0
        while True:
            pending = self._end - self._start
            if pending >= _MARK_LEN and self._buf[self._end - _MARK_LEN:self._end] == mark:
                out.write(self._view[self._start:self._end - _MARK_LEN])
                return written + pending - _MARK_LEN
            if pending > _MARK_LEN:
                flush_to = self._end - _MARK_LEN
                out.write(self._view[self._start:flush_to])
                written += flush_to - self._start
                self._start = flush_to
            try:
                self._fill()
            except RdbError:
                raise RdbError(f"{self.where} closed the connection after {written} bytes of its RDB, "
                               "before its end mark") from None


def _handshake(stream: _Stream, auth: list[str] | None) -> None:
    """AUTH, rdb-only (refused before Redis 7.0: harmless), the EOF capability, then SYNC."""
    if auth is not None:
        stream.send(*auth)
        reply = stream.line()
        if not reply.startswith(b"+"):
            raise RdbError(f"{stream.where} refused AUTH: {reply[1:].decode('utf-8', 'replace')}")
    stream.send("REPLCONF", "rdb-only", "1")
    reply = stream.line()
    if reply.startswith(b"-NOAUTH"):
        raise RdbError(f"{stream.where} requires a password: {reply[1:].decode('utf-8', 'replace')}")
    stream.send("REPLCONF", "capa", "eof")
    reply = stream.line()
    if reply.startswith(b"-"):
        raise RdbError(f"{stream.where} refused REPLCONF: {reply[1:].decode('utf-8', 'replace')}")
    stream.send("SYNC")


class _Writer:
    """Writes to the file, with fdatasync every _SYNC_EVERY bytes on a thread of its own (as
    redis's incremental fsync): the disk writes while the stream goes on, so the final fsync,
    on leaving the `with` without an error, has little left."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._unsynced = 0
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._sync, name="rdb-fsync", daemon=True)
        self._thread.start()

    def write(self, data: memoryview) -> None:
        while data:
            n = os.write(self._fd, data)
            data = data[n:]
            self._unsynced += n
        if self._unsynced >= _SYNC_EVERY:
            self._unsynced = 0
            self._wake.set()

    def _sync(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            with contextlib.suppress(OSError):  # the final fsync reports what matters
                os.fdatasync(self._fd)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join()
        if kind is None:
            os.fsync(self._fd)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fsync_dir(directory: Path) -> None:
    """The rename itself reaches the disk (a crash right after must not lose the file)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
