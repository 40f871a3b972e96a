"""Just enough RESP for a front that authenticates clients before a node: a client's commands
(arrays of bulk strings, or inline commands) and where one reply of the node ends (every RESP2
and RESP3 type: a HELLO's reply is a map).

Both work on a buffer that may hold a part of a message: they answer None until it is whole.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "encode_command", "parse_command", "reply_end"]

CRLF = b"\r\n"
_LINE_TYPES = frozenset(b"+-:_,#(")  # simple string, error, integer, null, double, boolean, big number
_BLOB_TYPES = frozenset(b"$=!")  # bulk string, verbatim string, bulk error
_AGGREGATE_TYPES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}  # elements per count


class ProtocolError(Exception):
    """Bytes that are not RESP; the message is what redis answers (`-ERR <message>`)."""


def _line(buf: bytes | bytearray, pos: int) -> tuple[bytes, int] | None:
    end = buf.find(CRLF, pos)
    if end < 0:
        return None
    return bytes(buf[pos:end]), end + 2


def _number(text: bytes, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"Protocol error: invalid {what}") from None


def parse_command(buf: bytes | bytearray, *, max_args: int, max_bulk: int) -> tuple[list[bytes], int] | None:
    """The first command in `buf` and the bytes it takes; None when it is not whole yet.
    `max_args`, `max_bulk`: what an unauthenticated client may send (redis closes such a client
    on more, with these messages)."""
    if not buf:
        return None
    if buf[0] != ord("*"):  # an inline command: words on one line
        found = _line(buf, 0)
        if found is None:
            if len(buf) > max_bulk:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        line, pos = found
        return [bytes(w) for w in line.split()], pos
    found = _line(buf, 1)
    if found is None:
        return None
    count_text, pos = found
    count = _number(count_text, "multibulk length")
    if count > max_args:
        raise ProtocolError("Protocol error: unauthenticated multibulk length")
    args: list[bytes] = []
    for _ in range(count):
        if pos >= len(buf):
            return None
        if buf[pos] != ord("$"):
            raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[pos])}'")
        found = _line(buf, pos + 1)
        if found is None:
            return None
        size_text, pos = found
        size = _number(size_text, "bulk length")
        if not 0 <= size <= max_bulk:
            raise ProtocolError("Protocol error: unauthenticated bulk length")
        if len(buf) < pos + size + 2:
            return None
        args.append(bytes(buf[pos:pos + size]))
        pos += size + 2
    return args, pos


def encode_command(args: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """Where the reply starting at `pos` ends (the offset after it); None when it is not whole yet."""
    if pos >= len(buf):
        return None
    kind = buf[pos]
    found = _line(buf, pos + 1)
    if found is None:
        return None
    text, after = found
    if kind in _LINE_TYPES:
        return after
    if kind in _BLOB_TYPES:
        size = _number(text, "bulk length")
        if size < 0:
            return after
        return after + size + 2 if len(buf) >= after + size + 2 else None
    per = _AGGREGATE_TYPES.get(kind)
    if per is None:
        raise ProtocolError(f"Protocol error: unknown reply type {chr(kind)!r}")
    count = _number(text, "aggregate length")
    end: int | None = after
    for _ in range(max(count, 0) * per):
        assert end is not None
        end = reply_end(buf, end)
        if end is None:
            return None
    if kind == ord("|") and end is not None:  # attributes come before the reply they describe
        return reply_end(buf, end)
    return end
