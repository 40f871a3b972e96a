"""What only the process runtime does, against real redis-server and memcached nodes (fast: a
node is up in ~10 ms): node directories and pid files, readiness reports, exit watching and
removal off the critical path. The contract it shares with the other runtimes is in
test_runtime_contract.py. Every node a test starts is removed by the kit at the end."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from engine.runtime.base import NodeState
from engine.runtime.process import ProcessRuntime
from tests.eventually import eventually
from tests.requires import needs
from tests.runtimes import BINARIES, Exits, ProcessKit, info, redis_cmd, serving

needs_redis = needs(BINARIES.get("redis"), "redis-server is not installed")
needs_memcached = needs(BINARIES.get("memcached"), "memcached is not installed")


@pytest.fixture
def rt(kit: ProcessKit) -> tuple[ProcessRuntime, Exits]:
    return kit.listening()


@needs_redis
def test_a_node_lives_in_its_own_directory(rt: tuple[ProcessRuntime, Exits], kit: ProcessKit) -> None:
    runtime, _ = rt
    config = kit.config(runtime, "r1")
    started = runtime.start(config)
    serving(runtime, "r1")
    node_dir = runtime.node_dir("r1")
    assert (node_dir / "node.json").is_file() and (node_dir / "node.conf").is_file()
    assert (node_dir / "node.pid").read_text().strip() == str(started.pid)
    runtime.stop("r1")
    assert (node_dir / "dump.rdb").is_file() and not (node_dir / "node.pid").exists()
    runtime.remove("r1")
    assert not node_dir.exists()


@needs_redis
def test_what_a_node_writes_is_its_users_only(kit: ProcessKit) -> None:
    """The node's own files (the AOF directory and files it makes) as well as the runtime's
    (config, record, log): mode 0600/0700 though the umask is 022."""
    old = os.umask(0o022)
    try:
        runtime = kit.runtime()
        config = kit.config(runtime, "r5", settings={"appendonly": "yes"})
        runtime.start(config)
        serving(runtime, "r5")
        assert redis_cmd(config.host, config.port, "SET", "k", "v") == b"+OK\r\n"
        runtime.stop("r5")
    finally:
        os.umask(old)
    node_dir = runtime.node_dir("r5")
    found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [node_dir, *node_dir.rglob("*")]}
    assert {"appendonlydir", "appendonly.aof.manifest", "node.conf", "node.json", "node.log"} <= set(found), \
        sorted(found)
    assert {name: oct(mode) for name, mode in found.items() if mode & 0o077} == {}


@needs_redis
def test_stale_pid_file_is_not_trusted(kit: ProcessKit) -> None:
    runtime = kit.runtime()
    runtime.start(kit.config(runtime, "r4"))
    runtime.stop("r4")
    # A pid that is alive but is not the node (pid reuse): here, the test process itself.
    (runtime.node_dir("r4") / "node.pid").write_text(f"{os.getpid()}\n")
    fresh = kit.runtime()
    assert info(fresh, "r4").state is NodeState.EXITED
    fresh.stop("r4")  # must not signal the unrelated process
    fresh.kill("r4")


# --- readiness reports, exits and removal off the critical path ---


def _until_reported(runtime: ProcessRuntime, name: str, timeout: float = 5.0) -> None:
    """wait_ready until the node's READY=1 has been seen (bounded)."""
    eventually(lambda: runtime.wait_ready(name, timeout), timeout, 0.0,
               f"READY=1 from {name} (redis-server built without systemd support?)")


@needs_redis
def test_a_starting_redis_node_reports_ready_once(rt: tuple[ProcessRuntime, Exits], kit: ProcessKit) -> None:
    runtime, _ = rt
    config = kit.config(runtime, "r9")
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
def test_a_node_that_exits_while_starting_ends_the_wait(rt: tuple[ProcessRuntime, Exits], kit: ProcessKit) -> None:
    runtime, exits = rt
    runtime.start(kit.config(runtime, "r4"))
    _until_reported(runtime, "r4")  # learn that this binary reports
    # Without a start grace, start() returns however soon the node fails: the failure is an exit
    # like any other, told to the listener before wait_ready hears of it.
    runtime.start(kit.config(runtime, "r3", settings={"maxmemory-policy": "no-such-policy"}))
    started = time.monotonic()
    assert runtime.wait_ready("r3", 5.0)  # its exit is the news, long before 5 s
    assert time.monotonic() - started < 2.0
    assert exits.count("r3") == 1 and not runtime.probe("r3", 0.5).ok
    runtime.remove("r3")
    runtime.remove("r4")


@needs_memcached
def test_nodes_without_reports_just_pause(rt: tuple[ProcessRuntime, Exits], kit: ProcessKit) -> None:
    runtime, _ = rt
    runtime.start(kit.config(runtime, "m9", "memcached"))
    serving(runtime, "m9")
    started = time.monotonic()
    assert not runtime.wait_ready("m9", 5.0)
    assert not runtime.wait_ready("nobody", 5.0)
    assert time.monotonic() - started < 1.0  # pauses between probes, not the offered 5 s
    runtime.remove("m9")


@needs_redis
def test_kill_returns_once_the_child_is_gone(rt: tuple[ProcessRuntime, Exits], kit: ProcessKit) -> None:
    runtime, exits = rt
    config = kit.config(runtime, "r8")
    pid = runtime.start(config).pid
    assert pid is not None
    serving(runtime, "r8")
    runtime.kill("r8")
    # Reaped (not a zombie) and reported before kill() returned.
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert exits.count("r8") == 1
    assert runtime.inspect("r8") is not None and info(runtime, "r8").state is NodeState.EXITED
    # Whichever thread saw the exit first told the listener; the other one does not, later:
    # once every watcher of the node has ended, nobody is left to tell it again.
    for _ in range(5):
        runtime.start(config)
        serving(runtime, "r8")
        runtime.kill("r8")
    eventually(lambda: not any(t.name == "node-exit-r8" and t.is_alive() for t in threading.enumerate()),
               message="the exit watchers of r8 have ended")
    assert exits.count("r8") == 6


@needs_redis
def test_remove_frees_the_name_at_once_and_deletes_in_the_background(kit: ProcessKit, tmp_path: Path) -> None:
    runtime = kit.runtime()
    config = kit.config(runtime, "r7")
    runtime.start(config)
    serving(runtime, "r7")
    assert redis_cmd(config.host, config.port, "SET", "k", "old") == b"+OK\r\n"
    assert redis_cmd(config.host, config.port, "SAVE") == b"+OK\r\n"
    runtime.remove("r7")
    assert not runtime.node_dir("r7").exists() and runtime.inspect("r7") is None
    assert "r7" not in [n.name for n in runtime.list_managed()]
    # The same name starts afresh: nothing of the removed node's data comes back.
    runtime.start(config)
    serving(runtime, "r7")
    assert redis_cmd(config.host, config.port, "GET", "k") == b"$-1\r\n"
    runtime.remove("r7")
    runtime.close()  # waits for the background deletion
    assert not (tmp_path / "data" / ".trash").exists()


def test_trash_left_by_a_crash_is_deleted_by_the_next_runtime(kit: ProcessKit, tmp_path: Path) -> None:
    leftover = tmp_path / "data" / ".trash" / "r6.0123456789ab"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "dump.rdb").write_bytes(b"x" * 1000)
    runtime = kit.runtime()
    assert runtime.list_managed() == []
    runtime.close()
    assert not (tmp_path / "data" / ".trash").exists()


def _notify_address(runtime: ProcessRuntime) -> bytes:
    address = runtime._ready.address
    assert address is not None, "no readiness socket on this platform"
    return b"\0" + address[1:].encode()


@needs_redis
@needs_memcached
def test_reports_are_read_at_once_and_only_the_nodes_own_count(
        rt: tuple[ProcessRuntime, Exits], kit: ProcessKit) -> None:
    runtime, _ = rt
    runtime.start(kit.config(runtime, "r5"))  # starts the reader
    runtime.start(kit.config(runtime, "m5", "memcached"))
    serving(runtime, "m5")
    address = _notify_address(runtime)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as forger:
        forger.setblocking(False)

        def sent() -> bool:
            try:
                forger.sendto(b"STATUS=Syncing\nREADY=1\n", address)
            except BlockingIOError:
                return False
            return True

        # More than the kernel queues (net.unix.max_dgram_qlen, 10 by default): a node sending
        # this many (STATUS= lines, STOPPING=1, READY=1) must never block in sd_notify().
        for _ in range(200):
            eventually(sent, 1.0, 0.01, "the runtime reads its readiness socket")
    # READY=1 from a process that is not the node (the kernel says who sent it) wakes nobody.
    assert not runtime.wait_ready("m5", 0.05)
    runtime.remove("r5")
    runtime.remove("m5")
