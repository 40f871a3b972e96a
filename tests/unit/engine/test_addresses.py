from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator

import pytest

from engine.addresses import AddressAllocator, can_bind, loopback_aliases_work
from engine.runtime.base import RuntimeError_

TEST_NET = "127.0.200.0/24"  # test-only addresses, away from a running service's 127.0.100.0/22


def always_free(host: str, port: int) -> int | None:
    return None


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.200.77", 0))
    sock.listen(1)
    yield sock
    sock.close()


def test_loopback_hosts_skip_dot0_dot255_and_127_0_0_1() -> None:
    hosts = list(AddressAllocator(network="127.0.0.0/23").hosts())
    assert "127.0.0.0" not in hosts and "127.0.0.1" not in hosts and "127.0.0.255" not in hosts
    assert "127.0.1.0" not in hosts and "127.0.1.255" not in hosts
    assert hosts[0] == "127.0.0.2" and hosts[-1] == "127.0.1.254"
    assert len(hosts) == 2 * 254 - 1


def test_default_network_gives_1016_addresses() -> None:
    hosts = list(AddressAllocator().hosts())
    assert hosts[0] == "127.0.100.1" and len(hosts) == 4 * 254


def test_loopback_allocates_first_free_on_the_wanted_port() -> None:
    alloc = AddressAllocator(network=TEST_NET, bind_check=always_free)
    assert alloc.allocate(6379, in_use=()) == ("127.0.200.1", 6379)
    # held: the next allocation does not hand out the same address again
    assert alloc.allocate(6379, in_use=()) == ("127.0.200.2", 6379)
    # in_use is skipped; other ports on an in-use host are separate addresses
    assert alloc.allocate(6379, in_use=[("127.0.200.3", 6379)]) == ("127.0.200.4", 6379)
    assert alloc.allocate(11211, in_use=[("127.0.200.1", 6379)]) == ("127.0.200.1", 11211)


def test_release_makes_an_address_available_again() -> None:
    alloc = AddressAllocator(network=TEST_NET, bind_check=always_free)
    first = alloc.allocate(6379, ())
    alloc.release(*first)
    assert alloc.allocate(6379, ()) == first


def test_hold_expires() -> None:
    now = [0.0]
    alloc = AddressAllocator(network=TEST_NET, bind_check=always_free, hold_seconds=10, clock=lambda: now[0])
    first = alloc.allocate(6379, ())
    assert alloc.allocate(6379, ()) != first
    now[0] = 11.0
    assert alloc.allocate(6379, ()) == first


def test_unbindable_addresses_are_skipped() -> None:
    busy = {("127.0.200.1", 6379), ("127.0.200.2", 6379)}
    alloc = AddressAllocator(network=TEST_NET, bind_check=lambda h, p: errno.EADDRINUSE if (h, p) in busy else None)
    assert alloc.allocate(6379, ()) == ("127.0.200.3", 6379)


def test_really_bound_address_is_skipped(listener: socket.socket) -> None:
    host, port = listener.getsockname()
    assert not can_bind(host, port)
    alloc = AddressAllocator(network="127.0.200.76/30")  # .76 .77 .78 .79
    assert alloc.allocate(port, [("127.0.200.76", port)]) == ("127.0.200.78", port)


def test_exhaustion_is_a_permanent_error_with_a_hint() -> None:
    alloc = AddressAllocator(network="127.0.200.0/30", bind_check=always_free)  # .1 .2 .3
    for _ in range(3):
        alloc.allocate(6379, ())
    with pytest.raises(RuntimeError_) as caught:
        alloc.allocate(6379, ())
    assert caught.value.temporary is False
    assert "no free address in 127.0.200.0/30 for port 6379" in str(caught.value)


def test_port_taken_everywhere_suggests_ports_mode() -> None:
    alloc = AddressAllocator(network="127.0.200.0/30", bind_check=lambda h, p: errno.EADDRINUSE)
    with pytest.raises(RuntimeError_, match=r"taken on every address.*'ports'"):
        alloc.allocate(6379, ())


def test_missing_loopback_aliases_suggest_ports_mode() -> None:
    alloc = AddressAllocator(network="127.0.200.0/30", bind_check=lambda h, p: errno.EADDRNOTAVAIL)
    with pytest.raises(RuntimeError_, match="ifconfig lo0 alias"):
        alloc.allocate(6379, ())


def test_loopback_mode_needs_a_port() -> None:
    with pytest.raises(ValueError):
        AddressAllocator(network=TEST_NET).allocate(None, ())


def test_ports_mode_allocates_from_the_range_on_127_0_0_1() -> None:
    alloc = AddressAllocator("ports", port_range=(30000, 30002), bind_check=always_free)
    assert alloc.allocate(6379, ()) == ("127.0.0.1", 30000)  # the wanted port is ignored
    assert alloc.allocate(None, [("127.0.0.1", 30001)]) == ("127.0.0.1", 30002)
    with pytest.raises(RuntimeError_, match=r"no free port in 30000-30002 on 127\.0\.0\.1") as caught:
        alloc.allocate(None, [("127.0.0.1", 30001)])
    assert caught.value.temporary is False


def test_ports_mode_really_binds(listener: socket.socket) -> None:
    host, port = listener.getsockname()
    alloc = AddressAllocator("ports", ports_host=host, port_range=(port, port))
    with pytest.raises(RuntimeError_, match=f"no free port in {port}-{port}"):
        alloc.allocate(None, ())


def test_concurrent_allocations_never_collide() -> None:
    alloc = AddressAllocator(network="127.0.200.0/24", bind_check=always_free)
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            got = alloc.allocate(6379, ())
            with lock:
                results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 160 and len(set(results)) == 160


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AddressAllocator(network="10.0.0.0/24")
    with pytest.raises(ValueError):
        AddressAllocator("ports", port_range=(0, 10))
    with pytest.raises(ValueError):
        AddressAllocator("nat")  # type: ignore[arg-type]


def test_loopback_aliases_work_on_linux() -> None:
    import sys

    if sys.platform.startswith("linux"):
        assert loopback_aliases_work()
    assert loopback_aliases_work("127.0.0.1")
