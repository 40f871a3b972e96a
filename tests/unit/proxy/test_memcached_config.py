"""The memcached configuration endpoint against real memcached nodes."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest
from pymemcache.client.base import Client

from engine.proxy import BindError, Member, ProxyError, ProxyHub
from engine.proxy.memcached_wire import (
    HEADER,
    Answer,
    BinaryRequestParser,
    BinaryResponseScanner,
    Command,
    Continuation,
    TextRequestParser,
    TextResponseScanner,
    binary_response,
)

from .conftest import PORT, Node, exchange, read_exactly, read_until

ENDPOINT = ("127.0.201.10", PORT)
NAME = "mc-config"


@pytest.fixture
def endpoint(hub: ProxyHub, flushed: tuple[Node, Node]) -> Iterator[tuple[Node, Node]]:
    hub.add_memcached_config_endpoint(NAME, *ENDPOINT)
    try:
        yield flushed
    finally:
        hub.remove(NAME)


def config(address: tuple[str, int] = ENDPOINT) -> bytes:
    return exchange(address, b"config get cluster\r\n", b"END\r\n")


def node_get(node: Node, key: bytes) -> bytes:
    return exchange((node.member.ip, PORT), b"get %s\r\n" % key, b"END\r\n")


def test_config_get_cluster_exact_bytes_and_versions(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    a, b = endpoint
    hub.set_members(NAME, [a.member, b.member])
    # payload "1\n" + two 30-byte entries + " " + "\n" = 64 bytes, counted up to the CRLF before END
    assert config() == (
        b"CONFIG cluster 0 64\r\n"
        b"1\n"
        b"node-1.local|127.0.201.1|11211 node-2.local|127.0.201.2|11211\n"
        b"\r\n"
        b"END\r\n"
    )
    assert hub.config_version(NAME) == 1

    hub.set_members(NAME, [a.member])
    assert config() == b"CONFIG cluster 0 33\r\n2\nnode-1.local|127.0.201.1|11211\n\r\nEND\r\n"
    hub.set_members(NAME, [a.member])  # same set: no new version
    assert hub.config_version(NAME) == 2
    assert config().startswith(b"CONFIG cluster 0 33\r\n2\n")
    hub.set_members(NAME, [b.member, a.member])
    hub.set_members(NAME, [a.member, b.member])  # same set in another order: no new version
    assert hub.config_version(NAME) == 3


def test_legacy_get_amazonelasticache_cluster(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    a, b = endpoint
    hub.set_members(NAME, [a.member, b.member])
    payload = b"1\nnode-1.local|127.0.201.1|11211 node-2.local|127.0.201.2|11211\n"
    got = exchange(ENDPOINT, b"get AmazonElastiCache:cluster\r\n", b"END\r\n")
    assert got == b"VALUE AmazonElastiCache:cluster 0 64\r\n" + payload + b"\r\nEND\r\n"


def test_no_members(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    # Nothing published yet: version 0, empty list (the first membership clients see is 1).
    assert config() == b"CONFIG cluster 0 3\r\n0\n\n\r\nEND\r\n"
    with socket.create_connection(ENDPOINT, timeout=5) as sock:
        # The data block of a storage command is swallowed, not read as a command.
        sock.sendall(b"set k 0 0 7\r\nversion\r\nget k\r\nconfig get cluster\r\n")
        got = read_until(sock, b"END\r\n")
        assert got == (
            b"SERVER_ERROR no nodes available\r\n"
            b"SERVER_ERROR no nodes available\r\n"
            b"CONFIG cluster 0 3\r\n0\n\n\r\nEND\r\n"
        )


def test_commands_reach_the_first_member_and_config_stays_in_order(
    hub: ProxyHub, endpoint: tuple[Node, Node]
) -> None:
    a, b = endpoint
    hub.set_members(NAME, [a.member, b.member])
    with socket.create_connection(ENDPOINT, timeout=5) as sock:
        sock.sendall(b"set k 0 0 5\r\nhello\r\n")
        assert read_until(sock, b"\r\n") == b"STORED\r\n"
        # Pipelined: a data block that looks like a command, a config request between commands
        # that go to the node, and the client's own `version`: all answered in order.
        sock.sendall(
            b"set v 0 0 20\r\nconfig get cluster\r\n\r\n"
            b"get k\r\nconfig get cluster\r\nversion\r\nget v\r\nget AmazonElastiCache:cluster\r\n"
        )
        got = read_until(sock, b"VALUE AmazonElastiCache:cluster 0 64\r\n" + _payload(1) + b"\r\nEND\r\n")
        assert got == (
            b"STORED\r\n"
            b"VALUE k 0 5\r\nhello\r\nEND\r\n"
            b"CONFIG cluster 0 64\r\n" + _payload(1) + b"\r\nEND\r\n"
            b"VERSION 1.6.18\r\n"
            b"VALUE v 0 20\r\nconfig get cluster\r\n\r\nEND\r\n"
            b"VALUE AmazonElastiCache:cluster 0 64\r\n" + _payload(1) + b"\r\nEND\r\n"
        )
    assert node_get(a, b"k") == b"VALUE k 0 5\r\nhello\r\nEND\r\n"
    assert node_get(b, b"k") == b"END\r\n"


def _payload(version: int) -> bytes:
    return b"%d\nnode-1.local|127.0.201.1|11211 node-2.local|127.0.201.2|11211\n" % version


def test_pymemcache_through_the_endpoint(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    a, b = endpoint
    hub.set_members(NAME, [a.member, b.member])
    client = Client(ENDPOINT, connect_timeout=5, timeout=5)
    try:
        value = b"x" * 200_000  # larger than one read: the data block is streamed
        assert client.set("big", value)
        assert client.get("big") == value
        client.set_many({"m1": b"1", "m2": b"2"})
        assert client.get_many(["m1", "m2", "nope"]) == {"m1": b"1", "m2": b"2"}
        assert client.incr("m1", 5) == 6
        assert client.version().startswith(b"1.6")
        raw = client.raw_command(b"config get cluster", end_tokens=b"END\r\n")  # strips END
        assert raw == b"CONFIG cluster 0 64\r\n" + _payload(1) + b"\r\n"
    finally:
        client.close()
    assert node_get(a, b"m2") == b"VALUE m2 0 1\r\n2\r\nEND\r\n"


def test_unreachable_member_is_skipped(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    _, b = endpoint
    nobody = Member("node-9.local", "127.0.201.9", PORT)  # nothing listens there
    hub.set_members(NAME, [nobody, b.member])
    assert exchange(ENDPOINT, b"set s 0 0 1\r\n1\r\n", b"\r\n") == b"STORED\r\n"
    assert node_get(b, b"s") == b"VALUE s 0 1\r\n1\r\nEND\r\n"


def test_member_leaving_closes_its_connections(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    a, b = endpoint
    hub.set_members(NAME, [a.member, b.member])
    with socket.create_connection(ENDPOINT, timeout=5) as sock:
        sock.sendall(b"version\r\n")
        read_until(sock, b"\r\n")
        hub.set_members(NAME, [b.member])
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed, as a node going away would
    # A new connection goes to the new first member.
    assert exchange(ENDPOINT, b"set n 0 0 1\r\n1\r\n", b"\r\n") == b"STORED\r\n"
    assert node_get(b, b"n") == b"VALUE n 0 1\r\n1\r\nEND\r\n"
    assert node_get(a, b"n") == b"END\r\n"


def _bin_request(
    opcode: int, key: bytes = b"", value: bytes = b"", extras: bytes = b"", opaque: int = 0
) -> bytes:
    body = len(extras) + len(key) + len(value)
    return (
        HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, body, opaque, bytes(8)) + extras + key + value
    )


def _bin_response(sock: socket.socket) -> tuple[int, int, int, bytes, bytes, bytes]:
    """(opcode, status, opaque, extras, key, value)"""
    magic, opcode, keylen, extlen, _, status, body, opaque, _ = HEADER.unpack(read_exactly(sock, HEADER.size))
    assert magic == 0x81
    data = read_exactly(sock, body) if body else b""
    return opcode, status, opaque, data[:extlen], data[extlen : extlen + keylen], data[extlen + keylen :]


def test_binary_protocol(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    a, b = endpoint
    hub.set_members(NAME, [a.member, b.member])
    with socket.create_connection(ENDPOINT, timeout=5) as sock:
        set_extras = struct.pack(">II", 7, 0)
        sock.sendall(
            _bin_request(0x01, b"bk", b"binary", set_extras, opaque=1)  # SET
            + _bin_request(0x60, b"cluster", opaque=2)  # config get cluster
            + _bin_request(0x00, b"bk", opaque=3)  # GET
            + _bin_request(0x0A, opaque=4)  # NOOP (the client's own)
            + _bin_request(0x0C, b"AmazonElastiCache:cluster", opaque=5)  # GETK of the legacy key
        )
        assert _bin_response(sock)[:3] == (0x01, 0, 1)
        assert _bin_response(sock) == (0x60, 0, 2, bytes(4), b"", _payload(1))
        assert _bin_response(sock) == (0x00, 0, 3, struct.pack(">I", 7), b"", b"binary")
        assert _bin_response(sock)[:3] == (0x0A, 0, 4)
        assert _bin_response(sock) == (0x0C, 0, 5, bytes(4), b"AmazonElastiCache:cluster", _payload(1))
    assert node_get(a, b"bk") == b"VALUE bk 7 6\r\nbinary\r\nEND\r\n"


def test_binary_protocol_without_members(hub: ProxyHub, endpoint: tuple[Node, Node]) -> None:
    with socket.create_connection(ENDPOINT, timeout=5) as sock:
        sock.sendall(_bin_request(0x00, b"k", opaque=9) + _bin_request(0x60, b"cluster", opaque=10))
        opcode, status, opaque, _, _, value = _bin_response(sock)
        assert (opcode, status, opaque, value) == (0x00, 0x86, 9, b"no nodes available")
        assert _bin_response(sock) == (0x60, 0, 10, bytes(4), b"", b"0\n\n")


def test_remove_frees_the_address_and_bind_errors_are_clear(hub: ProxyHub, nodes: tuple[Node, Node]) -> None:
    hub.add_memcached_config_endpoint("first", *ENDPOINT)
    try:
        hub.add_memcached_config_endpoint("first", *ENDPOINT)  # repeating an add is fine
        with pytest.raises(BindError, match=r"127\.0\.201\.10:11211"):
            hub.add_memcached_config_endpoint("second", *ENDPOINT)
        with pytest.raises(ProxyError, match="already exists"):
            hub.add_tcp_forwarder("first", *ENDPOINT, target=None)
        with pytest.raises(ProxyError, match="not a tcp forwarder"):
            hub.set_target("first", None)
        with socket.create_connection(ENDPOINT, timeout=5) as open_conn:
            open_conn.sendall(b"config get cluster\r\n")
            read_until(open_conn, b"END\r\n")
            hub.remove("first")
            open_conn.settimeout(5)
            assert open_conn.recv(100) == b""  # its connections are closed too
    finally:
        hub.remove("first")
    hub.remove("first")  # unknown names are ignored
    with socket.socket() as sock:
        # The address is free again. SO_REUSEADDR as every server sets it: the proxy closed
        # connections itself, so they sit in TIME_WAIT on the server side.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(ENDPOINT)
        sock.listen()
    hub.add_memcached_config_endpoint("again", *ENDPOINT)
    hub.remove("again")
    with pytest.raises(ProxyError, match="no proxy endpoint"):
        hub.set_members("first", [])


def test_hub_lifecycle() -> None:
    hub = ProxyHub(call_timeout=5)
    with pytest.raises(ProxyError, match="not running"):
        hub.add_memcached_config_endpoint("x", "127.0.201.11", 0)
    with hub:
        hub.add_memcached_config_endpoint("x", "127.0.201.11", 0)
        host, port = hub.address("x")
        assert host == "127.0.201.11" and port > 0
        started = time.monotonic()
        assert config((host, port)) == b"CONFIG cluster 0 3\r\n0\n\n\r\nEND\r\n"
        assert time.monotonic() - started < 1
    hub.close()  # idempotent
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, port), timeout=5):
        pass


# -- the parsers on their own, fed one byte at a time (every split point) ---------------------


def test_text_request_parser_split_anywhere() -> None:
    parser = TextRequestParser(lambda: b"1\nh|1.2.3.4|11211\n")
    stream = (
        b"set k 0 0 20\r\nconfig get cluster\r\n\r\n"
        b"get k\r\nconfig get cluster\r\nversion\r\nms m 3 T0\r\nabc\r\nget AmazonElastiCache:cluster\r\n"
        b"quit\r\n"
    )
    requests = [r for i in range(len(stream)) for r in parser.feed(stream[i : i + 1])]
    forwarded = b"".join(r.data for r in requests if isinstance(r, Command | Continuation))
    assert forwarded == (
        b"set k 0 0 20\r\nconfig get cluster\r\n\r\nget k\r\nversion\r\nms m 3 T0\r\nabc\r\nquit\r\n"
    )
    commands = [r for r in requests if not isinstance(r, Continuation)]
    assert [type(r).__name__ for r in commands] == [
        "Command",
        "Command",
        "Answer",
        "Command",
        "Command",
        "Answer",
        "Command",
    ]
    assert [r.marker for r in commands if isinstance(r, Command)] == [False, False, True, False, False]
    assert isinstance(commands[-1], Command) and commands[-1].quit
    assert commands[2] == Answer(b"CONFIG cluster 0 18\r\n1\nh|1.2.3.4|11211\n\r\nEND\r\n")


def test_text_response_scanner_split_anywhere() -> None:
    scanner = TextResponseScanner()
    stream = (
        b"STORED\r\nVALUE k 0 16\r\nVERSION inside\r\n\r\nEND\r\n"
        b"VERSION 1.6.18\r\nVA 9\r\nVERSION x\r\nHD\r\n"
    )
    runs = [run for i in range(len(stream)) for run in scanner.feed(stream[i : i + 1])]
    assert b"".join(data for _, data in runs) == stream
    assert [data for marker, data in runs if marker] == [b"VERSION 1.6.18\r\n"]


def test_binary_scanners_split_anywhere() -> None:
    parser = BinaryRequestParser(lambda: b"P")
    stream = (
        _bin_request(0x01, b"k", b"v" * 30, struct.pack(">II", 0, 0), opaque=1)
        + _bin_request(0x60, b"cluster", opaque=2)
        + _bin_request(0x0A, opaque=3)
    )
    requests = [r for i in range(len(stream)) for r in parser.feed(stream[i : i + 1])]
    assert b"".join(r.data for r in requests if isinstance(r, Command | Continuation)) == (
        stream[: len(stream) - 2 * HEADER.size - len(b"cluster")] + _bin_request(0x0A, opaque=3)
    )
    answers = [r for r in requests if isinstance(r, Answer)]
    assert answers == [Answer(binary_response(0x60, 2, extras=bytes(4), value=b"P"))]

    scanner = BinaryResponseScanner()
    noop = binary_response(0x0A, 3)
    replies = binary_response(0x00, 1, extras=bytes(4), value=b"\x81\x0a" * 20) + noop
    runs = [run for i in range(len(replies)) for run in scanner.feed(replies[i : i + 1])]
    assert b"".join(data for _, data in runs) == replies
    assert [data for marker, data in runs if marker] == [noop]
