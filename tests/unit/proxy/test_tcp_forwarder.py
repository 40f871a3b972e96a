"""The generic L4 forwarder of the hub, in front of real memcached nodes."""

from __future__ import annotations

import socket

from engine.proxy import ProxyHub

from .conftest import PORT, Node, exchange, read_until

FORWARDER = ("127.0.201.20", PORT)


def test_forwarder_follows_its_target(hub: ProxyHub, flushed: tuple[Node, Node]) -> None:
    a, b = flushed
    hub.add_tcp_forwarder("fwd", *FORWARDER, target=(a.member.ip, PORT))
    try:
        old = socket.create_connection(FORWARDER, timeout=5)
        try:
            old.sendall(b"set k 0 0 1\r\na\r\n")
            assert read_until(old, b"\r\n") == b"STORED\r\n"

            hub.set_target("fwd", (b.member.ip, PORT))
            # New connections go to the new target, the existing one stays where it was.
            assert exchange(FORWARDER, b"set k 0 0 1\r\nb\r\n", b"\r\n") == b"STORED\r\n"
            old.sendall(b"get k\r\n")
            assert read_until(old, b"END\r\n") == b"VALUE k 0 1\r\na\r\nEND\r\n"
            assert exchange((b.member.ip, PORT), b"get k\r\n", b"END\r\n") == b"VALUE k 0 1\r\nb\r\nEND\r\n"

            # A half-closed client still gets its answer (EOF is passed on, not turned into a reset).
            with socket.create_connection(FORWARDER, timeout=5) as once:
                once.sendall(b"get k\r\n")
                once.shutdown(socket.SHUT_WR)
                assert read_until(once, b"END\r\n") == b"VALUE k 0 1\r\nb\r\nEND\r\n"

            hub.set_target("fwd", (a.member.ip, PORT), drop_existing=True)
            old.settimeout(5)
            assert old.recv(100) == b""
            assert exchange(FORWARDER, b"get k\r\n", b"END\r\n") == b"VALUE k 0 1\r\na\r\nEND\r\n"

            hub.set_target("fwd", None)  # no target: connections are accepted and closed
            with socket.create_connection(FORWARDER, timeout=5) as refused:
                refused.settimeout(5)
                assert refused.recv(100) == b""
        finally:
            old.close()
    finally:
        hub.remove("fwd")
