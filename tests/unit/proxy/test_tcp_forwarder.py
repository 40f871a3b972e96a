"""The L4 forwarders of the hub, built in and HAProxy, in front of real memcached nodes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.proxy import ProxyHub
from engine.proxy.haproxy import HaproxyForwarders, find_haproxy

from .conftest import PORT, Node, exchange, read_until

FORWARDER = ("127.0.201.20", PORT)


@pytest.fixture(params=["builtin", "haproxy"])
def tcp_hub(request: pytest.FixtureRequest, hub: ProxyHub, tmp_path: Path) -> Iterator[ProxyHub]:
    if request.param == "builtin":
        yield hub
        return
    binary = find_haproxy()
    # deploy/bootstrap.sh installs haproxy: its absence is a broken set-up, not a reason to skip.
    assert binary is not None, "haproxy is not installed (apt-get install haproxy, or make bootstrap)"
    with ProxyHub(call_timeout=5, tcp=HaproxyForwarders(tmp_path / "proxy", binary)) as haproxy_hub:
        yield haproxy_hub


def test_forwarder_follows_its_target(tcp_hub: ProxyHub, flushed: tuple[Node, Node]) -> None:
    hub = tcp_hub
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
