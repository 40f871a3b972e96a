"""Real memcached nodes and a running ProxyHub for the proxy tests (loopback 127.0.201.0/24 only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from engine.proxy import Member, ProxyHub
from tests.eventually import NotYet, eventually
from tests.requires import missing

NODE_IPS = ("127.0.201.1", "127.0.201.2")
PORT = 11211


@dataclass(frozen=True)
class Node:
    member: Member
    process: subprocess.Popen[bytes]


def exchange(address: tuple[str, int], data: bytes, until: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a new connection and read until the answer ends with `until`."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return read_until(sock, until, timeout)


def read_until(sock: socket.socket, until: bytes, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    got = b""
    while not got.endswith(until):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {until!r}; got {got!r}")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed waiting for {until!r}; got {got!r}")
        got += chunk
    return got


def read_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    got = b""
    while len(got) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise AssertionError(f"connection closed after {got!r}")
        got += chunk
    return got


def start_node(ip: str, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """A memcached on ip:PORT (`extra`: more arguments, e.g. TLS); stop it with stop_node."""
    binary = shutil.which("memcached")
    if binary is None:
        missing("memcached is not installed")
    argv = [binary, "-l", ip, "-p", str(PORT), "-U", "0", "-m", "16", "-t", "1", *extra]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root otherwise
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def listening() -> bool:
        if process.poll() is not None:  # pytest.fail ends the wait at once
            err = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"memcached on {ip}:{PORT} exited: {err.strip()}")
        try:
            with socket.create_connection((ip, PORT), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        eventually(listening, 5.0, 0.02, f"memcached on {ip}:{PORT} listening")
    except NotYet:
        stop_node(process)
        raise
    return process


def stop_node(process: subprocess.Popen[bytes]) -> None:
    # SIGKILL: these nodes hold nothing worth a graceful stop, and memcached only notices
    # SIGTERM on its next one-second clock tick.
    process.kill()
    process.wait(5)
    if process.stderr:
        process.stderr.close()


@pytest.fixture(scope="package")
def nodes() -> Iterator[tuple[Node, Node]]:
    started: list[Node] = []
    try:
        for i, ip in enumerate(NODE_IPS, start=1):
            started.append(Node(Member(f"node-{i}.local", ip, PORT), start_node(ip)))
        yield started[0], started[1]
    finally:
        for node in started:
            stop_node(node.process)


@pytest.fixture(autouse=False)
def flushed(nodes: tuple[Node, Node]) -> tuple[Node, Node]:
    for node in nodes:
        assert exchange((node.member.ip, PORT), b"flush_all\r\n", b"OK\r\n") == b"OK\r\n"
    return nodes


@pytest.fixture(scope="package")
def hub() -> Iterator[ProxyHub]:
    proxy_hub = ProxyHub(call_timeout=5)
    proxy_hub.start()
    try:
        yield proxy_hub
    finally:
        proxy_hub.close()
