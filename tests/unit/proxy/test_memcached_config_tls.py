"""The memcached configuration endpoint of a cluster with in-transit encryption: it speaks TLS
only (a certificate from the service CA for its address), answers `config get cluster` over TLS,
and passes every other command to a real memcached that speaks TLS only."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from controlplane.tls import LocalCa
from engine.proxy import Member, ProxyHub
from engine.security import TlsFiles

from .conftest import PORT, read_until, start_node, stop_node

NODE_IP = "127.0.201.3"
ENDPOINT = ("127.0.201.12", PORT)
NAME = "mc-config-tls"


@pytest.fixture
def secured(hub: ProxyHub, tmp_path: Path) -> Iterator[tuple[ssl.SSLContext, Member]]:
    """A TLS-only memcached and the configuration endpoint before it; a client context trusting the CA."""
    ca = LocalCa(tmp_path)
    node_cert, node_key = ca.issue([NODE_IP])
    process = start_node(NODE_IP, ["-Z", "-o", f"ssl_chain_cert={node_cert},ssl_key={node_key}"])
    cert, key = ca.issue([ENDPOINT[0]])
    hub.add_memcached_config_endpoint(NAME, *ENDPOINT, tls=TlsFiles(str(cert), str(key), str(ca.ca_path)))
    member = Member("node-3.local", NODE_IP, PORT)
    hub.set_members(NAME, [member])
    try:
        yield ssl.create_default_context(cafile=str(ca.ca_path)), member
    finally:
        hub.remove(NAME)
        stop_node(process)


def test_config_get_cluster_and_commands_over_tls(secured: tuple[ssl.SSLContext, Member]) -> None:
    context, member = secured
    client = Client(ENDPOINT, tls_context=context, connect_timeout=5, timeout=5)
    try:
        answer = client.raw_command(b"config get cluster", b"END\r\n")
        assert answer == b"CONFIG cluster 0 33\r\n1\nnode-3.local|127.0.201.3|11211\n\r\n"  # up to END
        # Everything else goes to the node, over TLS (the node speaks nothing else).
        assert client.set("k", b"v", noreply=False)
        assert client.get("k") == b"v"
    finally:
        client.close()
    direct = Client((member.ip, PORT), tls_context=context, connect_timeout=5, timeout=5)
    try:
        assert direct.get("k") == b"v"
    finally:
        direct.close()


def test_plain_text_is_not_answered(secured: tuple[ssl.SSLContext, Member]) -> None:
    with socket.create_connection(ENDPOINT, timeout=5) as sock:
        sock.sendall(b"config get cluster\r\n")
        with pytest.raises((AssertionError, OSError)):  # closed (or silent) instead of a configuration
            read_until(sock, b"END\r\n", timeout=2.0)
