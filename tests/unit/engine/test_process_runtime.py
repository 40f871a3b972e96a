"""The process runtime against real redis-server and memcached nodes (fast: a node is up in
~10 ms). Nodes listen on test-only loopback addresses (127.0.200.0 - 127.0.249.255) and every
node a test starts is removed by the fixture's finalizer."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.addresses import AddressAllocator
from engine.runtime.base import NodeConfig, NodeInfo, NodeRuntime, NodeState, ProbeResult, RuntimeError_
from engine.runtime.process import ProcessRuntime
from engine.versions import Binary, discover

BINARIES = discover()
REDIS = BINARIES.get("redis", [None])[0]
MEMCACHED = BINARIES.get("memcached", [None])[0]
needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")
needs_memcached = pytest.mark.skipif(MEMCACHED is None, reason="memcached is not installed")

# A random test-only /24 per session, so concurrent test runs rarely meet on an address.
ADDRESSES = AddressAllocator(network=f"127.0.{random.randint(200, 249)}.0/24", hold_seconds=600)


class Exits:
    """Exit listener that lets a test wait for a node's exit notification."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, name: str) -> None:
        with self._cond:
            self.names.append(name)
            self._cond.notify_all()

    def wait_for(self, name: str, count: int = 1, timeout: float = 1.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.names.count(name) >= count, timeout)


Factory = Callable[..., ProcessRuntime]


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Factory]:
    """Runtimes on tmp_path/data; at the end every node under it is removed."""
    runtimes: list[ProcessRuntime] = []

    def make(**kw: object) -> ProcessRuntime:
        rt = ProcessRuntime(tmp_path / "data", BINARIES, **kw)  # type: ignore[arg-type]
        runtimes.append(rt)
        return rt

    yield make
    cleaner = ProcessRuntime(tmp_path / "data", BINARIES)
    for info in cleaner.list_managed():
        cleaner.remove(info.name)
    for rt in [*runtimes, cleaner]:
        rt.close()
    assert not any((tmp_path / "data").iterdir())


@pytest.fixture
def rt(make_runtime: Factory) -> tuple[ProcessRuntime, Exits]:
    runtime = make_runtime()
    exits = Exits()
    runtime.set_exit_listener(exits)
    return runtime, exits


def node_config(
    name: str, binary: Binary | None, port: int, *, threads: int = 1, settings: dict[str, str] | None = None
) -> NodeConfig:
    assert binary is not None
    host, port = ADDRESSES.allocate(port, ())
    return NodeConfig(
        name=name,
        engine=binary.engine,
        version=binary.version,
        host=host,
        port=port,
        memory_mb=64,
        threads=threads,
        settings=settings or {},
    )


def wait_ready(runtime: NodeRuntime, name: str, limit: float = 2.0) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    while True:
        result = runtime.probe(name, 0.5)
        elapsed = time.monotonic() - started
        if result.ok:
            return result, elapsed
        assert elapsed < limit, f"{name} not ready after {limit} s: {result.error}"
        time.sleep(0.002)


def redis_cmd(host: str, port: int, *args: str) -> bytes:
    """One command over a raw socket; returns the raw reply."""
    payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


def mc_cmd(host: str, port: int, line: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(line)
        return sock.recv(65536)


def info(runtime: NodeRuntime, name: str) -> NodeInfo:
    found = runtime.inspect(name)
    assert found is not None
    return found


@needs_redis
def test_redis_node_lifecycle(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, exits = rt
    runtime_protocol: NodeRuntime = runtime
    assert runtime_protocol.name == "process"
    assert REDIS is not None and REDIS.version in runtime.available_versions()["redis"]
    config = node_config("r1", REDIS, 6379)
    started = runtime.start(config)
    assert started.state is NodeState.RUNNING and started.pid and started.port == 6379
    result, _ = wait_ready(runtime, "r1")
    assert result.role == "master" and result.version == REDIS.version and result.error is None
    node_dir = runtime.node_dir("r1")
    assert (node_dir / "node.json").is_file() and (node_dir / "node.conf").is_file()
    assert (node_dir / "node.pid").read_text().strip() == str(started.pid)

    assert redis_cmd(config.host, 6379, "SET", "k", "v1") == b"+OK\r\n"
    assert redis_cmd(config.host, 6379, "SAVE") == b"+OK\r\n"
    assert runtime.start(config).pid == started.pid  # idempotent

    runtime.kill("r1")
    assert exits.wait_for("r1", timeout=1.0)
    assert info(runtime, "r1").state is NodeState.EXITED and info(runtime, "r1").pid is None
    assert not runtime.probe("r1", 0.5).ok

    again = runtime.start(config)  # same directory, same data
    assert again.pid != started.pid
    wait_ready(runtime, "r1")
    assert redis_cmd(config.host, 6379, "GET", "k") == b"$2\r\nv1\r\n"

    runtime.stop("r1")
    assert exits.wait_for("r1", count=2, timeout=1.0)
    assert info(runtime, "r1").state is NodeState.EXITED
    assert (node_dir / "dump.rdb").is_file() and not (node_dir / "node.pid").exists()
    runtime.stop("r1")  # no-op
    runtime.kill("r1")  # no-op
    runtime.remove("r1")
    assert not node_dir.exists() and runtime.inspect("r1") is None
    runtime.remove("r1")  # no-op


@needs_memcached
def test_memcached_node_lifecycle(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, exits = rt
    config = node_config("m1", MEMCACHED, 11211, threads=2)
    started = runtime.start(config)
    result, _ = wait_ready(runtime, "m1")
    assert result.role is None and MEMCACHED is not None and result.version == MEMCACHED.version
    assert mc_cmd(config.host, 11211, b"set k 0 0 2\r\nv1\r\n") == b"STORED\r\n"
    assert mc_cmd(config.host, 11211, b"get k\r\n") == b"VALUE k 0 2\r\nv1\r\nEND\r\n"
    runtime.kill("m1")
    assert exits.wait_for("m1", timeout=1.0)
    assert runtime.start(config).pid != started.pid
    wait_ready(runtime, "m1")
    runtime.stop("m1")
    assert exits.wait_for("m1", count=2, timeout=1.0)
    runtime.remove("m1")
    assert not runtime.node_dir("m1").exists()


@needs_redis
def test_nodes_are_readopted_by_a_new_runtime(make_runtime: Factory) -> None:
    first = make_runtime()
    first_exits = Exits()
    first.set_exit_listener(first_exits)
    config = node_config("r2", REDIS, 6379)
    pid = first.start(config).pid
    wait_ready(first, "r2")
    first.close()  # the control plane goes away; the node does not

    second = make_runtime()
    second_exits = Exits()
    second.set_exit_listener(second_exits)
    assert second.list_managed() == [
        NodeInfo("r2", NodeState.RUNNING, "redis", config.version, config.host, 6379, pid, {})
    ]
    assert second.probe("r2", 0.5).ok
    assert second.start(config).pid == pid  # running: adopted as it is
    second.kill("r2")
    assert second_exits.wait_for("r2", timeout=1.0)  # through the pidfd watcher
    assert info(second, "r2").state is NodeState.EXITED
    assert first_exits.names == []


@needs_redis
def test_readopted_node_exit_is_noticed_without_our_kill(make_runtime: Factory) -> None:
    first = make_runtime()
    pid = first.start(node_config("r3", REDIS, 6379)).pid
    assert pid is not None
    first.close()
    second = make_runtime()
    exits = Exits()
    second.set_exit_listener(exits)
    assert info(second, "r3").state is NodeState.RUNNING  # inspect adopts and watches
    os.kill(pid, 9)  # a crash
    assert exits.wait_for("r3", timeout=1.0)


@needs_redis
def test_stale_pid_file_is_not_trusted(make_runtime: Factory) -> None:
    runtime = make_runtime()
    runtime.start(node_config("r4", REDIS, 6379))
    runtime.stop("r4")
    # A pid that is alive but is not the node (pid reuse): here, the test process itself.
    (runtime.node_dir("r4") / "node.pid").write_text(f"{os.getpid()}\n")
    fresh = make_runtime()
    assert info(fresh, "r4").state is NodeState.EXITED
    fresh.stop("r4")  # must not signal the unrelated process
    fresh.kill("r4")


@needs_redis
def test_pause_resume_and_stop_a_paused_node(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, exits = rt
    runtime.start(node_config("r5", REDIS, 6379))
    wait_ready(runtime, "r5")
    runtime.pause("r5")
    assert info(runtime, "r5").state is NodeState.PAUSED
    result = runtime.probe("r5", 0.2)
    assert not result.ok and result.error == "timed out"
    runtime.resume("r5")
    assert info(runtime, "r5").state is NodeState.RUNNING
    assert runtime.probe("r5", 0.5).ok
    runtime.pause("r5")
    started = time.monotonic()
    runtime.stop("r5", timeout=2.0)  # SIGTERM + SIGCONT: a graceful stop, not the SIGKILL timeout
    assert time.monotonic() - started < 1.5
    assert exits.wait_for("r5")
    with pytest.raises(RuntimeError_):
        runtime.pause("r5")


@needs_redis
def test_address_in_use_is_reported_before_starting(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, _ = rt
    config = node_config("r6", REDIS, 6379)
    with socket.socket() as squatter:
        squatter.bind((config.host, config.port))
        squatter.listen(1)
        with pytest.raises(RuntimeError_, match="already in use") as caught:
            runtime.start(config)
    assert caught.value.temporary
    assert info(runtime, "r6").state is NodeState.EXITED


@needs_redis
def test_start_grace_reports_an_immediate_exit_with_the_log(make_runtime: Factory) -> None:
    runtime = make_runtime(start_grace=1.0)
    config = node_config("r7", REDIS, 6379, settings={"no-such-directive": "1"})
    started = time.monotonic()
    with pytest.raises(RuntimeError_, match="exited at once") as caught:
        runtime.start(config)
    assert time.monotonic() - started < 0.9  # returns as soon as the node exits
    assert "no-such-directive" in str(caught.value) and not caught.value.temporary
    assert info(runtime, "r7").state is NodeState.EXITED


def test_invalid_requests_are_permanent_errors(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, _ = rt
    bad = [
        NodeConfig("x1", "redis", "0.0.1", "127.0.200.1", 6379, 64),  # not installed
        NodeConfig("../x", "redis", "7.0.15", "127.0.200.1", 6379, 64),  # not a file name
        NodeConfig("x2", "mysql", "8.0", "127.0.200.1", 3306, 64),
    ]
    if REDIS is not None:
        bad.append(NodeConfig("x3", "redis", REDIS.version, "127.0.200.1", 6379, 64, settings={"a": "1\n2"}))
    for config in bad:
        with pytest.raises(RuntimeError_) as caught:
            runtime.start(config)
        assert not caught.value.temporary, config
    assert runtime.inspect("nope") is None and runtime.inspect("../etc") is None
    assert not runtime.probe("nope", 0.1).ok
    with pytest.raises(RuntimeError_):
        runtime.resume("nope")


@needs_redis
@needs_memcached
def test_parallel_starts_from_many_threads(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, exits = rt
    configs = [node_config(f"p{i}", REDIS if i % 2 else MEMCACHED, 6379 if i % 2 else 11211) for i in range(8)]
    errors: list[BaseException] = []

    def go(config: NodeConfig) -> None:
        try:
            runtime.start(config)
            wait_ready(runtime, config.name)
            runtime.kill(config.name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(c,)) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(exits.names) == sorted(c.name for c in configs)


# --- readiness reports, exits and removal off the critical path ---


def _until_reported(runtime: ProcessRuntime, name: str, timeout: float = 5.0) -> None:
    """wait_ready until the node's READY=1 has been seen (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runtime.wait_ready(name, timeout):
            return
    raise AssertionError(f"no READY=1 from {name} (redis-server built without systemd support?)")


@needs_redis
def test_a_starting_redis_node_reports_ready_once(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, _ = rt
    config = node_config("r9", REDIS, 6379)
    runtime.start(config)
    assert "supervised systemd" in (runtime.node_dir("r9") / "node.conf").read_text().splitlines()
    # The binary has not reported yet (it could lack systemd support): short pauses until it does.
    _until_reported(runtime, "r9")
    assert runtime.probe("r9", 0.5).ok  # READY=1 comes once it serves
    started = time.monotonic()
    assert not runtime.wait_ready("r9", 5.0)  # once per start: then only a short pause
    assert time.monotonic() - started < 1.0
    runtime.stop("r9")  # redis sends STOPPING=1 to the socket: still ours, nothing is logged
    assert "systemd supervision error" not in (runtime.node_dir("r9") / "node.log").read_text()
    # Known to report now: one call waits for the report, no polling.
    runtime.start(config)
    assert runtime.wait_ready("r9", 5.0)
    assert runtime.probe("r9", 0.5).ok
    runtime.remove("r9")


@needs_redis
def test_a_node_that_exits_while_starting_ends_the_wait(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, exits = rt
    runtime.start(node_config("r4", REDIS, 6379))
    _until_reported(runtime, "r4")  # learn that this binary reports
    runtime.start(node_config("r3", REDIS, 6379, settings={"maxmemory-policy": "no-such-policy"}))
    started = time.monotonic()
    assert runtime.wait_ready("r3", 5.0)  # its exit is the news, long before 5 s
    assert time.monotonic() - started < 2.0
    assert exits.wait_for("r3") and not runtime.probe("r3", 0.5).ok
    runtime.remove("r3")
    runtime.remove("r4")


@needs_memcached
def test_nodes_without_reports_just_pause(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, _ = rt
    runtime.start(node_config("m9", MEMCACHED, 11211))
    wait_ready(runtime, "m9")
    started = time.monotonic()
    assert not runtime.wait_ready("m9", 5.0)
    assert not runtime.wait_ready("nobody", 5.0)
    assert time.monotonic() - started < 1.0  # pauses between probes, not the offered 5 s
    runtime.remove("m9")


@needs_redis
def test_kill_returns_once_the_child_is_gone(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, exits = rt
    config = node_config("r8", REDIS, 6379)
    pid = runtime.start(config).pid
    assert pid is not None
    wait_ready(runtime, "r8")
    runtime.kill("r8")
    # Reaped (not a zombie) and reported before kill() returned.
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert exits.names.count("r8") == 1
    assert runtime.inspect("r8") is not None and info(runtime, "r8").state is NodeState.EXITED
    # Whichever thread saw the exit first told the listener; the other one does not, later.
    for _ in range(5):
        runtime.start(config)
        wait_ready(runtime, "r8")
        runtime.kill("r8")
    time.sleep(0.1)
    assert exits.names.count("r8") == 6


@needs_redis
def test_remove_frees_the_name_at_once_and_deletes_in_the_background(
        make_runtime: Factory, tmp_path: Path) -> None:
    runtime = make_runtime()
    config = node_config("r7", REDIS, 6379)
    runtime.start(config)
    wait_ready(runtime, "r7")
    assert redis_cmd(config.host, 6379, "SET", "k", "old") == b"+OK\r\n"
    assert redis_cmd(config.host, 6379, "SAVE") == b"+OK\r\n"
    runtime.remove("r7")
    assert not runtime.node_dir("r7").exists() and runtime.inspect("r7") is None
    assert "r7" not in [n.name for n in runtime.list_managed()]
    # The same name starts afresh: nothing of the removed node's data comes back.
    runtime.start(config)
    wait_ready(runtime, "r7")
    assert redis_cmd(config.host, 6379, "GET", "k") == b"$-1\r\n"
    runtime.remove("r7")
    runtime.close()  # waits for the background deletion
    assert not (tmp_path / "data" / ".trash").exists()


def test_trash_left_by_a_crash_is_deleted_by_the_next_runtime(make_runtime: Factory, tmp_path: Path) -> None:
    leftover = tmp_path / "data" / ".trash" / "r6.0123456789ab"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "dump.rdb").write_bytes(b"x" * 1000)
    runtime = make_runtime()
    assert runtime.list_managed() == []
    runtime.close()
    assert not (tmp_path / "data" / ".trash").exists()


def _notify_address(runtime: ProcessRuntime) -> bytes:
    address = runtime._ready.address
    assert address is not None, "no readiness socket on this platform"
    return b"\0" + address[1:].encode()


@needs_redis
@needs_memcached
def test_reports_are_read_at_once_and_only_the_nodes_own_count(rt: tuple[ProcessRuntime, Exits]) -> None:
    runtime, _ = rt
    runtime.start(node_config("r5", REDIS, 6379))  # starts the reader
    runtime.start(node_config("m5", MEMCACHED, 11211))
    wait_ready(runtime, "m5")
    address = _notify_address(runtime)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as forger:
        forger.setblocking(False)
        # More than the kernel queues (net.unix.max_dgram_qlen, 10 by default): a node sending
        # this many (STATUS= lines, STOPPING=1, READY=1) must never block in sd_notify().
        for _ in range(200):
            for attempt in range(100):
                try:
                    forger.sendto(b"STATUS=Syncing\nREADY=1\n", address)
                    break
                except BlockingIOError:
                    assert attempt < 99, "the runtime does not read its readiness socket"
                    time.sleep(0.01)
    # READY=1 from a process that is not the node (the kernel says who sent it) wakes nobody.
    assert not runtime.wait_ready("m5", 0.05)
    runtime.remove("r5")
    runtime.remove("m5")
