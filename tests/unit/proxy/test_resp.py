"""The RESP reading of the IAM authenticator (engine/proxy/resp.py): no servers."""

from __future__ import annotations

import pytest

from engine.proxy.resp import ProtocolError, encode_command, parse_command, reply_end

LIMITS = {"max_args": 10, "max_bulk": 64}


def test_commands_whole_partial_and_inline() -> None:
    wire = encode_command([b"AUTH", b"app", b"tok/?a=b&c"]) + b"PING\r\n"
    args, used = parse_command(wire, **LIMITS) or ([], 0)
    assert args == [b"AUTH", b"app", b"tok/?a=b&c"]
    assert parse_command(wire[used:], **LIMITS) == ([b"PING"], 6)
    for cut in range(used):  # every prefix of a command is "not yet"
        assert parse_command(wire[:cut], **LIMITS) is None
    assert parse_command(b"  hello  3 \r\n", **LIMITS) == ([b"hello", b"3"], 13)


def test_unauthenticated_limits_and_garbage() -> None:
    with pytest.raises(ProtocolError, match="unauthenticated multibulk length"):
        parse_command(b"*11\r\n", **LIMITS)
    with pytest.raises(ProtocolError, match="unauthenticated bulk length"):
        parse_command(b"*1\r\n$65\r\n", **LIMITS)
    with pytest.raises(ProtocolError, match="expected '\\$'"):
        parse_command(b"*1\r\n:1\r\n", **LIMITS)
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parse_command(b"*x\r\n", **LIMITS)
    with pytest.raises(ProtocolError, match="too big inline"):
        parse_command(b"x" * 65, **LIMITS)


def test_reply_end_of_every_type() -> None:
    hello3 = (b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n")
    replies = [b"+OK\r\n", b"-WRONGPASS no\r\n", b":1\r\n", b"$-1\r\n", b"$3\r\nabc\r\n", b"_\r\n", b",1.5\r\n",
               b"#t\r\n", b"(12\r\n", b"=7\r\ntxt:abc\r\n", b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"~1\r\n+x\r\n",
               b">2\r\n+a\r\n+b\r\n", b"*-1\r\n", hello3, b"|1\r\n+k\r\n+v\r\n+OK\r\n"]
    for reply in replies:
        assert reply_end(reply) == len(reply), reply
        assert reply_end(reply + b"+next\r\n") == len(reply), reply
        for cut in range(len(reply)):
            assert reply_end(reply[:cut]) is None, (reply, cut)
    with pytest.raises(ProtocolError):
        reply_end(b"?what\r\n")
