"""Backups and restores at the engine's level: NodeRuntime.save_rdb, check_rdb, NodeConfig.seed,
and what a node loads at a start (its seed; its AOF; nothing else), on every runtime: real
redis/valkey nodes as processes and containers (marked `docker`), and the fake."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.access import Reach
from engine.rdb import EMPTY_RDB, RdbError, check_rdb, save_rdb
from engine.runtime.base import NodeConfig, NodeState, RuntimeError_
from engine.runtime.fake import CORRUPT, FakeRuntime
from tests.eventually import eventually
from tests.runtimes import Kit, info, kit_for, redis_cmd, serving

DOCKER = pytest.param("docker", marks=pytest.mark.docker)
N = 3000


@pytest.fixture(params=["process", DOCKER, "fake"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    with kit_for(request.param, tmp_path) as made:
        yield made


@pytest.fixture(params=["process", DOCKER])
def real(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    with kit_for(request.param, tmp_path) as made:
        yield made


def dataset(n: int, *, incompressible: bool = False) -> dict[str, str]:
    """n keys; `incompressible`: 128 more bytes per value that an RDB cannot compress."""
    def pad(i: int) -> str:
        return hashlib.sha512(b"%d" % i).hexdigest() if incompressible else "x" * (i % 97)

    return {f"key:{i}": f"value-{i}-{pad(i)}" for i in range(n)}


def node(kit: Kit, runtime: Any, name: str, engine: str = "redis", **kw: Any) -> NodeConfig:
    """A node config; fake nodes get addresses of their own (replicas find their primary by it)."""
    config = kit.config(runtime, name, engine, **kw)
    if kit.kind == "fake":
        config = dataclasses.replace(config, host=f"127.0.200.{10 + len(runtime.list_managed())}")
    return config


def client(config: NodeConfig) -> redis.Redis:
    return redis.Redis(config.host, config.port, password=config.settings.get("requirepass"), socket_timeout=10)


def write(kit: Kit, runtime: Any, config: NodeConfig, data: dict[str, str]) -> None:
    if kit.kind == "fake":
        runtime.set_data(config.name, {**runtime.data_of(config.name), **data})
        return
    with client(config) as c:
        pipe = c.pipeline(transaction=False)
        for key, value in data.items():
            pipe.set(key, value)
        pipe.execute()


def assert_holds(kit: Kit, runtime: Any, config: NodeConfig, data: dict[str, str]) -> None:
    """The node serves exactly `data`: its key count, and every 50th value."""
    if kit.kind == "fake":
        assert runtime.data_of(config.name) == data
        return
    with client(config) as c:
        assert c.dbsize() == len(data)
        sample = list(data)[:: max(1, len(data) // 50)]
        if sample:
            assert [v.decode() if v is not None else v for v in c.mget(sample)] == [data[k] for k in sample]


def replicas_of(config: NodeConfig) -> int:
    with client(config) as c:
        return int(c.info("replication")["connected_slaves"])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- check_rdb ---


def test_check_rdb_says_why_a_file_is_no_rdb(tmp_path: Path) -> None:
    cases = {"missing": None, "empty": b"", "garbage": b"hello world, not an rdb" * 10,
             "cut": b"REDIS0011\xfa\x09redis-ver\x057.0.15\xff\x00\x01",
             "no-crc": b"REDIS0011\xfa\x09redis-ver\x057.0.15\xff"}
    reasons = {}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(RdbError) as caught:
            check_rdb(path)
        reasons[name] = str(caught.value)
    assert "no RDB file" in reasons["missing"] and "is empty" in reasons["empty"]
    assert "not an RDB file" in reasons["garbage"]
    assert "truncated" in reasons["cut"] and "truncated" in reasons["no-crc"]
    with pytest.raises(RdbError, match="directory"):
        check_rdb(tmp_path)
    (tmp_path / "ok.rdb").write_bytes(EMPTY_RDB)
    check_rdb(tmp_path / "ok.rdb")
    (tmp_path / "old.rdb").write_bytes(b"REDIS0004\xfe\x00\xff")  # before version 5: no checksum
    check_rdb(tmp_path / "old.rdb")


# --- saving, seeding ---


def test_a_saved_rdb_seeds_a_new_node_with_exactly_that_data(kit: Kit, tmp_path: Path) -> None:
    runtime, _ = kit.listening()
    source = node(kit, runtime, "src")
    runtime.start(source)
    serving(runtime, "src")
    data = dataset(N)
    write(kit, runtime, source, data)
    dest = tmp_path / "backup.rdb"
    size = runtime.save_rdb("src", dest, timeout=60)
    assert size == dest.stat().st_size > len(EMPTY_RDB)
    check_rdb(dest)
    assert sorted(p.name for p in tmp_path.glob("backup*")) == ["backup.rdb"]  # no .partial left
    if kit.kind != "fake":
        eventually(lambda: replicas_of(source) == 0, 5.0, 0.01, "the save's connection gone from INFO replication")
    assert_holds(kit, runtime, source, data)
    digest = sha(dest)

    copy = node(kit, runtime, "copy", seed=str(dest))
    runtime.start(copy)
    serving(runtime, "copy", timeout=30)
    assert_holds(kit, runtime, copy, data)
    write(kit, runtime, copy, {"new": "1"})
    runtime.stop("copy")
    assert sha(dest) == digest  # linked or copied, never moved or changed
    # A start without the seed: the node does not persist, so it comes back empty ...
    unseeded = dataclasses.replace(copy, seed=None)
    runtime.start(unseeded)
    serving(runtime, "copy")
    assert_holds(kit, runtime, unseeded, {})
    runtime.stop("copy")
    # ... and the same node (process directory, container) seeded again has the data again.
    runtime.start(copy)
    serving(runtime, "copy", timeout=30)
    assert_holds(kit, runtime, copy, data)


def test_a_replica_saves_and_passwords_are_used(kit: Kit, tmp_path: Path) -> None:
    runtime, _ = kit.listening()
    auth = {"requirepass": "s3cret", "masterauth": "s3cret"}
    primary = node(kit, runtime, "pri", settings=auth)
    replica = node(kit, runtime, "rep", settings=auth)
    for config in (primary, replica):
        runtime.start(config)
        serving(runtime, config.name)
    data = dataset(N)
    write(kit, runtime, primary, data)
    runtime.replicate("rep", (primary.host, primary.port))
    if kit.kind != "fake":
        eventually(lambda: client(replica).dbsize() == N, 10.0, 0.01, "the replica has the primary's data")
    dest = tmp_path / "from-replica.rdb"
    runtime.save_rdb("rep", dest, timeout=60)
    check_rdb(dest)
    if kit.kind != "fake":
        eventually(lambda: replicas_of(replica) == 0, 5.0, 0.01, "the replica keeps no replica of its own")
        assert replicas_of(primary) == 1  # its real replica only
    copy = node(kit, runtime, "copy", seed=str(dest))
    runtime.start(copy)
    serving(runtime, "copy", timeout=30)
    assert_holds(kit, runtime, copy, data)


def test_what_cannot_be_saved_is_refused_and_leaves_no_file(kit: Kit, tmp_path: Path) -> None:
    runtime, _ = kit.listening()
    config = node(kit, runtime, "r1")
    runtime.start(config)
    runtime.start(node(kit, runtime, "m1", "memcached"))
    serving(runtime, "r1")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "x.rdb"
    for name, temporary in (("absent", False), ("m1", False)):
        with pytest.raises(RuntimeError_) as caught:
            runtime.save_rdb(name, dest)
        assert caught.value.temporary is temporary
    runtime.pause("r1")
    with pytest.raises(RuntimeError_, match="paused"):
        runtime.save_rdb("r1", dest)
    if kit.kind == "fake":
        runtime.resume("r1")
        runtime.fail_saves("r1")
        with pytest.raises(RdbError):
            runtime.save_rdb("r1", dest)
    else:
        with pytest.raises(RdbError, match="timed out"):  # a paused node sends nothing
            save_rdb(Reach(config.host, config.port), dest, timeout=0.5)
        runtime.resume("r1")
        with pytest.raises(RdbError, match="refused AUTH"):
            save_rdb(Reach(config.host, config.port, password="wrong"), dest)
    runtime.stop("r1")
    with pytest.raises(RuntimeError_, match="exited"):
        runtime.save_rdb("r1", dest)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_a_node_given_a_seed_it_cannot_load_exits_and_never_serves_empty(real: Kit, tmp_path: Path,
                                                                          engine: str) -> None:
    runtime, exits = real.listening()
    source = node(real, runtime, "src", engine, memory_mb=128)
    runtime.start(source)
    serving(runtime, "src")
    write(real, runtime, source, dataset(40000, incompressible=True))  # an RDB of several MB
    good = tmp_path / "good.rdb"
    size = runtime.save_rdb("src", good)
    assert size > 4_000_000
    runtime.remove("src")
    content = good.read_bytes()
    middle = content.index(b"value-", size // 2) + 3  # inside a value: only the checksum tells
    (tmp_path / "truncated.rdb").write_bytes(content[: size // 2])
    (tmp_path / "corrupt.rdb").write_bytes(content[:middle] + b"X" + content[middle + 1:])
    check_rdb(tmp_path / "corrupt.rdb")  # passes: the load must find it
    for seed in ("truncated.rdb", "corrupt.rdb"):
        config = node(real, runtime, f"bad-{seed[:7]}", engine, seed=str(tmp_path / seed), memory_mb=128)
        runtime.start(config)
        eventually(lambda c=config: exited_without_serving_empty(runtime, c), 30.0, 0.002, f"{config.name} exits")
        assert exits.wait_for(config.name)
    with pytest.raises(RuntimeError_, match="no seed file") as caught:
        runtime.start(node(real, runtime, "no-seed", engine, seed=str(tmp_path / "absent.rdb")))
    assert not caught.value.temporary


def exited_without_serving_empty(runtime: Any, config: NodeConfig) -> bool:
    """True once the node has exited; until then, it must not answer DBSIZE with 0."""
    if info(runtime, config.name).state is NodeState.EXITED:
        return True
    with contextlib.suppress(OSError):  # not listening yet, or gone
        assert redis_cmd(config.host, config.port, "DBSIZE") != b":0\r\n", f"{config.name} served empty"
    return False


def test_the_fake_node_exits_on_a_seed_it_cannot_load(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    exits: list[str] = []
    runtime.set_exit_listener(exits.append)
    config = NodeConfig("n1", "redis", "7.0.15", "127.0.200.1", 6379, 64)
    runtime.start(config)
    runtime.set_data("n1", {"k": "v"})
    good = tmp_path / "good.rdb"
    runtime.save_rdb("n1", good)
    (tmp_path / "truncated.rdb").write_bytes(good.read_bytes()[:-3])
    (tmp_path / "corrupt.rdb").write_bytes(good.read_bytes()[:12] + CORRUPT + good.read_bytes()[12:])
    for seed in ("truncated.rdb", "corrupt.rdb"):
        name = f"bad-{seed[:7]}"
        assert runtime.start(dataclasses.replace(config, name=name, seed=str(tmp_path / seed))).pid
        assert exits[-1] == name and info(runtime, name).state is NodeState.EXITED
    runtime.start(dataclasses.replace(config, name="n2", seed=str(good)))
    assert runtime.seed_of("n2") == str(good) and runtime.data_of("n2") == {"k": "v"}
    assert runtime.config_of("n2").seed is None  # the seed is for that start only


# --- what a start loads ---


def test_without_aof_a_restarted_node_is_empty_and_with_aof_it_keeps_its_data(kit: Kit) -> None:
    runtime, _ = kit.listening()
    plain = node(kit, runtime, "plain")
    aof = node(kit, runtime, "aof", settings={"appendonly": "yes", "appendfsync": "everysec"})
    for config in (plain, aof):
        runtime.start(config)
        serving(runtime, config.name)
        write(kit, runtime, config, dataset(100))
    if kit.kind != "fake":
        assert redis_cmd(plain.host, plain.port, "SAVE") == b"+OK\r\n"  # an RDB on disk is not loaded either
    for end in (runtime.stop, runtime.kill):
        end("plain")
        runtime.start(plain)
        serving(runtime, "plain")
        assert_holds(kit, runtime, plain, {})
        write(kit, runtime, plain, dataset(100))
    runtime.stop("aof")  # SIGTERM: the AOF is flushed
    runtime.start(aof)
    serving(runtime, "aof")
    assert_holds(kit, runtime, aof, dataset(100))


def test_a_replicas_leftover_sync_file_is_not_loaded_at_its_restart(real: Kit) -> None:
    runtime, _ = real.listening()
    primary = node(real, runtime, "pri")
    replica = node(real, runtime, "rep")
    for config in (primary, replica):
        runtime.start(config)
        serving(runtime, config.name)
    write(real, runtime, primary, dataset(N))
    runtime.replicate("rep", (primary.host, primary.port))
    eventually(lambda: client(replica).dbsize() == N, 10.0, 0.01, "the replica has the primary's data")
    if real.kind == "process":  # the replica wrote what it received as its RDB file
        assert (runtime.node_dir("rep") / "dump.rdb").stat().st_size > 50_000
    runtime.kill("rep")
    runtime.start(replica)
    assert serving(runtime, "rep").role == "master"
    assert_holds(real, runtime, replica, {})


def test_a_seed_with_aof_on_becomes_the_base_of_its_aof(real: Kit, tmp_path: Path) -> None:
    runtime, _ = real.listening()
    source = node(real, runtime, "src")
    runtime.start(source)
    serving(runtime, "src")
    write(real, runtime, source, dataset(N))
    seed = tmp_path / "seed.rdb"
    runtime.save_rdb("src", seed)
    settings = {"appendonly": "yes", "appendfsync": "everysec"}
    copy = node(real, runtime, "copy", settings=settings)
    runtime.start(copy)  # an AOF of its own first, which the seed then replaces
    serving(runtime, "copy")
    write(real, runtime, copy, {"stale": "1"})
    runtime.stop("copy")
    runtime.start(dataclasses.replace(copy, seed=str(seed)))
    serving(runtime, "copy", timeout=30)
    assert_holds(real, runtime, copy, dataset(N))
    write(real, runtime, copy, {"new": "1"})
    runtime.stop("copy")
    runtime.start(copy)
    serving(runtime, "copy", timeout=30)
    assert_holds(real, runtime, copy, {**dataset(N), "new": "1"})


# --- the wire forms, against a scripted primary ---


class ScriptedPrimary:
    """A TCP server on 127.0.0.1 that answers one connection's handshake (+OK per command) and
    then sends `payload` and closes; stopped by the test."""

    def __init__(self, payload: bytes) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._payload = payload
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            received, answered = b"", 0
            while chunk := conn.recv(4096):
                received += chunk
                asked = received.count(b"REPLCONF")
                conn.sendall(b"+OK\r\n" * (asked - answered))
                answered = asked
                if b"\r\nSYNC\r\n" in received:
                    conn.sendall(self._payload)
                    return

    def stop(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("form", ["length", "eof-mark"])
def test_both_payload_forms_after_keepalive_newlines(tmp_path: Path, form: str) -> None:
    body = EMPTY_RDB[:-9] + bytes(range(256)) * 5000 + EMPTY_RDB[-9:]
    mark = b"m" * 40
    framed = b"$%d\r\n" % len(body) + body if form == "length" else b"$EOF:" + mark + b"\r\n" + body + mark
    payload = b"\n\n\n" + framed  # keepalive newlines while the node forks
    server = ScriptedPrimary(payload)
    try:
        assert save_rdb(Reach("127.0.0.1", server.port), tmp_path / "out.rdb", timeout=10) == len(body)
    finally:
        server.stop()
    assert (tmp_path / "out.rdb").read_bytes() == body


@pytest.mark.parametrize("payload", [b"$100\r\n" + b"x" * 50, b"$EOF:" + b"m" * 40 + b"\r\n" + b"x" * 5000,
                                     b"-ERR no sync for you\r\n", b"+what\r\n"])
def test_a_short_or_refused_payload_leaves_no_file(tmp_path: Path, payload: bytes) -> None:
    server = ScriptedPrimary(payload)
    try:
        with pytest.raises(RdbError) as caught:
            save_rdb(Reach("127.0.0.1", server.port), tmp_path / "out.rdb", timeout=10)
    finally:
        server.stop()
    assert "closed the connection" in str(caught.value) or "refused" in str(caught.value) or \
        "sent no RDB" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
