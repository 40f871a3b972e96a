"""Probes on kept connections (engine/adapters/redis_probes.py), against a fake redis on the
other end of a socketpair: reuse, freeze, a node that closed the connection, a changed reach,
the sweep of idle connections (fake clock)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from engine.access import Reach
from engine.adapters.redis_probes import ProbeConnections

REPLICATION = b"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


class FakeNode:
    """Answers what a probe sends: AUTH, INFO server, PING, INFO replication. `frozen`: reads and
    answers nothing (a SIGSTOPped node); `loading`: PING answers -LOADING."""

    def __init__(self, version: str = "7.2.4") -> None:
        self.version = version
        self.frozen = False
        self.loading = False
        self.connects = 0
        self.ends: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def connect(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.connects += 1
        self.ends.append(theirs)
        thread = threading.Thread(target=self._serve, args=(theirs,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return ours

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while not self.frozen and b"\r\n" in buf:
                    reply, buf = self._answer(buf)
                    if reply is None:
                        break
                    sock.sendall(reply)
        except OSError:
            return

    def _answer(self, buf: bytes) -> tuple[bytes | None, bytes]:
        """One command off `buf` (RESP arrays of bulk strings) and its reply."""
        lines = buf.split(b"\r\n")
        count = int(lines[0][1:])
        if len(lines) < 1 + 2 * count + 1:
            return None, buf
        args = [lines[2 + 2 * i].upper() for i in range(count)]
        rest = b"\r\n".join(lines[1 + 2 * count:])
        if args[0] == b"AUTH":
            return b"+OK\r\n", rest
        if args[0] == b"PING":
            return (b"-LOADING Redis is loading the dataset in memory\r\n" if self.loading else b"+PONG\r\n"), rest
        if args[1] == b"SERVER":
            return _bulk(b"# Server\r\nredis_version:%s\r\n" % self.version.encode()), rest
        return _bulk(REPLICATION), rest

    def close_all(self) -> None:
        for end in self.ends:
            end.close()


@dataclass(frozen=True)
class PairReach(Reach):
    node: FakeNode = field(default_factory=FakeNode, compare=False)

    def connect(self, timeout: float) -> socket.socket:
        return self.node.connect()


@pytest.fixture
def node() -> Iterator[FakeNode]:
    fake = FakeNode()
    yield fake
    fake.close_all()


def test_probes_reuse_one_connection_and_ask_the_version_once(node: FakeNode) -> None:
    probes = ProbeConnections()
    reach = PairReach("127.0.0.1", 6379, node=node)
    results = [probes.probe("n1", reach, 1.0) for _ in range(5)]
    assert all(r.ok and r.role == "master" and r.version == "7.2.4" for r in results)
    assert results[0].details["connected_slaves"] == "0"
    assert node.connects == 1 and len(probes) == 1
    probes.close()


def test_a_frozen_node_fails_within_the_timeout_and_its_connection_is_dropped(node: FakeNode) -> None:
    probes = ProbeConnections()
    reach = PairReach("127.0.0.1", 6379, node=node)
    assert probes.probe("n1", reach, 1.0).ok
    node.frozen = True
    result = probes.probe("n1", reach, 0.05)
    assert not result.ok and result.error == "timed out"
    assert len(probes) == 0  # its late replies must not answer the next probe
    node.frozen = False
    assert probes.probe("n1", reach, 1.0).ok and node.connects == 2
    probes.close()


def test_a_connection_the_node_closed_is_replaced_within_the_same_probe(node: FakeNode) -> None:
    probes = ProbeConnections()
    reach = PairReach("127.0.0.1", 6379, node=node)
    assert probes.probe("n1", reach, 1.0).ok
    node.close_all()  # a restart: the kept connection is dead, the node serves on new ones
    node.version = "7.4.0"
    result = probes.probe("n1", reach, 1.0)
    assert result.ok and result.version == "7.4.0" and node.connects == 2
    probes.close()


def test_loading_is_an_error_reply_on_a_connection_worth_keeping(node: FakeNode) -> None:
    probes = ProbeConnections()
    reach = PairReach("127.0.0.1", 6379, node=node)
    node.loading = True
    result = probes.probe("n1", reach, 1.0)
    assert not result.ok and (result.error or "").startswith("LOADING")
    node.loading = False
    assert probes.probe("n1", reach, 1.0).ok and node.connects == 1
    probes.close()


def test_a_new_reach_opens_a_new_connection(node: FakeNode) -> None:
    probes = ProbeConnections()
    assert probes.probe("n1", PairReach("127.0.0.1", 6379, password="old", node=node), 1.0).ok
    assert probes.probe("n1", PairReach("127.0.0.1", 6379, password="new", node=node), 1.0).ok
    assert node.connects == 2 and len(probes) == 1
    probes.close()


def test_connections_left_idle_are_swept_by_a_later_probe(node: FakeNode) -> None:
    now = [100.0]
    probes = ProbeConnections(idle_after=30.0, monotonic=lambda: now[0])
    gone, kept = PairReach("127.0.0.1", 1, node=node), PairReach("127.0.0.1", 2, node=node)
    assert probes.probe("gone", gone, 1.0).ok and probes.probe("kept", kept, 1.0).ok
    now[0] += 20.0
    assert probes.probe("kept", kept, 1.0).ok
    assert len(probes) == 2  # not idle long enough yet
    now[0] += 15.0
    assert probes.probe("kept", kept, 1.0).ok
    assert len(probes) == 1  # "gone" was not probed for 35 s: closed
    assert node.connects == 2
    probes.close()
    assert len(probes) == 0
