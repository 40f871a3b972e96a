"""HAProxy forwarders: the process, its runtime API, and what happens when things go wrong."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.proxy.haproxy import (
    ADMIN_MAINT,
    HaproxyForwarders,
    ServerState,
    find_haproxy,
    parse_servers_state,
    render_config,
)
from engine.proxy.tcp import BindError, ProxyError
from tests.eventually import eventually

from .conftest import PORT, Node, exchange

ENDPOINT = ("127.0.201.30", PORT)

# `show servers state node` of HAProxy 2.6, after `set server node/node addr ... state ready` on
# a server the configuration had `disabled` (CMAINT, 0x04, stays as a record).
STATE = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port\n"
    "3 node 1 node 127.0.0.51 2 4 1 1 0 1 0 0 8 0 0 0 - 7001 - 0 0 - - 0\n\n"
)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[HaproxyForwarders]:
    binary = find_haproxy()
    assert binary is not None, "haproxy is not installed (apt-get install haproxy, or make bootstrap)"
    forwarders = HaproxyForwarders(tmp_path / "proxy", binary)
    forwarders.start()
    try:
        yield forwarders
    finally:
        forwarders.close()


def test_server_state_is_read_from_the_runtime_api_text() -> None:
    state = parse_servers_state(STATE)
    assert state == ServerState("127.0.0.51", 7001, 4)
    assert state.target == ("127.0.0.51", 7001)  # CMAINT alone is not maintenance
    assert ServerState("127.0.0.1", 1, 5).target is None
    assert ServerState("127.0.0.1", 1, ADMIN_MAINT).target is None
    with pytest.raises(ProxyError):
        parse_servers_state("No such backend.\n")


def test_config_parks_an_endpoint_without_target(tmp_path: Path) -> None:
    parked = render_config(host="127.0.0.9", port=6379, target=None, socket_path=tmp_path / "s")
    assert "bind 127.0.0.9:6379" in parked
    assert "server node 127.0.0.1:1 disabled" in parked
    assert "noreuseport" in parked  # a second listener on the address must fail, not share it
    pointed = render_config(host="127.0.0.9", port=6379, target=("127.0.0.3", 6380), socket_path=tmp_path / "s")
    assert "server node 127.0.0.3:6380\n" in pointed


def test_a_taken_address_is_a_bind_error(pool: HaproxyForwarders) -> None:
    with socket.socket() as holder:
        holder.bind(ENDPOINT)
        holder.listen()
        with pytest.raises(BindError, match=r"127\.0\.201\.30"):
            pool.add("taken", *ENDPOINT, None)
    assert not pool.has("taken")
    pool.add("taken", *ENDPOINT, None)  # free again: it binds
    with pytest.raises(BindError):
        pool.add("second", *ENDPOINT, None)  # one address, one listener


def test_a_killed_haproxy_comes_back_on_the_next_add(pool: HaproxyForwarders, flushed: tuple[Node, Node]) -> None:
    target, pid = _forwarding(pool, flushed)
    os.kill(pid, signal.SIGKILL)
    _wait_refused(ENDPOINT)
    pool.add("fwd", *ENDPOINT, target)  # what the reconciler does every pass
    assert pool.pid("fwd") != pid
    assert pool.target("fwd") == target
    assert exchange(ENDPOINT, b"version\r\n", b"\r\n").startswith(b"VERSION ")


def test_a_new_pool_stops_the_haproxies_a_killed_service_left(tmp_path: Path, flushed: tuple[Node, Node]) -> None:
    binary = find_haproxy()
    assert binary is not None
    a, _ = flushed
    left = HaproxyForwarders(tmp_path / "proxy", binary)
    left.start()
    left.add("fwd", *ENDPOINT, (a.member.ip, PORT))
    old_pid = left.pid("fwd")
    # The service dies without closing its pool: its HAProxy keeps the address.
    successor = HaproxyForwarders(tmp_path / "proxy", binary)
    try:
        successor.start()
        successor.add("fwd", *ENDPOINT, (a.member.ip, PORT))
        assert successor.pid("fwd") != old_pid
        assert exchange(ENDPOINT, b"version\r\n", b"\r\n").startswith(b"VERSION ")
    finally:
        successor.close()
        left.close()  # nothing of its own is left to stop; only its temporary directory


def test_close_stops_every_haproxy(tmp_path: Path) -> None:
    binary = find_haproxy()
    assert binary is not None
    pool = HaproxyForwarders(tmp_path / "proxy", binary)
    pool.start()
    pool.add("one", *ENDPOINT, None)
    pid = pool.pid("one")
    assert pid is not None
    pool.close()
    pool.close()  # safe to repeat
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert list((tmp_path / "proxy").iterdir()) == []


def _forwarding(pool: HaproxyForwarders, nodes: tuple[Node, Node]) -> tuple[tuple[str, int], int]:
    """Forwarder "fwd" on ENDPOINT to the first node: its target and its HAProxy's pid."""
    target = (nodes[0].member.ip, PORT)
    pool.add("fwd", *ENDPOINT, target)
    pid = pool.pid("fwd")
    assert pid is not None
    return target, pid


def _wait_refused(address: tuple[str, int], timeout: float = 5.0) -> None:
    def refused() -> bool:
        try:
            socket.create_connection(address, timeout=0.5).close()
        except OSError:
            return True
        return False

    eventually(refused, timeout, 0.01, f"{address} refusing connections")


def test_a_frozen_haproxy_is_replaced_on_the_next_add(pool: HaproxyForwarders, flushed: tuple[Node, Node]) -> None:
    target, pid = _forwarding(pool, flushed)
    os.kill(pid, signal.SIGSTOP)  # alive, but its admin socket times out
    try:
        with pytest.raises(ProxyError):
            pool.set_target("fwd", None)
        pool.add("fwd", *ENDPOINT, target)  # what the reconciler does every pass
        assert pool.pid("fwd") != pid
        assert pool.target("fwd") == target
        assert exchange(ENDPOINT, b"version\r\n", b"\r\n").startswith(b"VERSION ")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
