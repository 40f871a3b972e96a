"""The NodeRuntime contract (engine/runtime/base.py), held against every runtime: the process
runtime on real redis-server/memcached, the docker runtime on a real Docker engine (marked
`docker`: skipped without one, failed in CI), and the fake the control plane's tests use.

What only real nodes can show (data, addresses, re-adoption) runs on process and docker; what a
single runtime adds is tested in its own file (test_process_runtime.py, test_fake_runtime.py,
tests/integration/test_docker_runtime.py)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.base import NodeConfig, NodeInfo, NodeRuntime, NodeState, RuntimeError_
from tests.eventually import eventually
from tests.runtimes import DOCKER_ADDRESSES, PROCESS_ADDRESSES, Kit, info, kit_for, mc_cmd, redis_cmd, serving

DOCKER = pytest.param("docker", marks=pytest.mark.docker)
EVERY_RUNTIME = ["process", DOCKER, "fake"]
REAL_RUNTIMES = ["process", DOCKER]


@pytest.fixture(params=EVERY_RUNTIME)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    with kit_for(request.param, tmp_path) as made:
        yield made


@pytest.fixture(params=REAL_RUNTIMES)
def real(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    with kit_for(request.param, tmp_path) as made:
        yield made


# --- every runtime ---


def test_start_is_idempotent_and_inspect_and_probe_agree(kit: Kit) -> None:
    runtime, _ = kit.listening()
    protocol: NodeRuntime = runtime
    assert protocol.name == kit.kind
    config = kit.config(runtime, "r1")
    assert config.version in runtime.available_versions()["redis"]
    started = runtime.start(config)
    assert started.state is NodeState.RUNNING and started.pid and started.port == config.port
    result = serving(runtime, "r1")
    assert result.role == "master" and result.version == config.version and result.error is None
    assert runtime.inspect("r1") == started
    assert runtime.start(config) == started  # idempotent
    mc = runtime.start(kit.config(runtime, "m1", "memcached"))
    assert serving(runtime, "m1").role is None and mc.pid != started.pid
    assert [i.name for i in runtime.list_managed()] == ["m1", "r1"]


def test_kill_and_stop_return_once_the_listener_has_been_told(kit: Kit) -> None:
    runtime, exits = kit.listening()
    config = kit.config(runtime, "r1")
    started = runtime.start(config)
    serving(runtime, "r1")
    runtime.kill("r1")
    assert exits.count("r1") == 1
    assert info(runtime, "r1").state is NodeState.EXITED and info(runtime, "r1").pid is None
    assert not runtime.probe("r1", 0.3).ok

    again = runtime.start(config)
    assert again.state is NodeState.RUNNING and again.pid != started.pid
    serving(runtime, "r1")
    runtime.stop("r1")
    assert exits.count("r1") == 2
    assert info(runtime, "r1").state is NodeState.EXITED
    runtime.stop("r1")  # no-op
    runtime.kill("r1")  # no-op
    runtime.remove("r1")
    assert runtime.inspect("r1") is None
    runtime.remove("r1")  # no-op
    runtime.stop("absent")
    runtime.remove("absent")
    assert exits.names == ["r1", "r1"]


def test_stop_kill_and_remove_each_tell_the_listener(kit: Kit) -> None:
    runtime, exits = kit.listening()
    for name in ("a", "b", "c"):
        runtime.start(kit.config(runtime, name))
    runtime.stop("a")
    runtime.kill("b")
    runtime.remove("c")
    assert exits.names == ["a", "b", "c"]
    assert runtime.inspect("c") is None


def test_the_listener_may_call_back_into_the_runtime(kit: Kit) -> None:
    runtime = kit.runtime()
    seen: list[NodeState] = []
    runtime.set_exit_listener(lambda name: seen.append(info(runtime, name).state))
    runtime.start(kit.config(runtime, "r1"))
    runtime.kill("r1")
    assert seen == [NodeState.EXITED]


def test_pause_resume_and_stop_a_paused_node(kit: Kit) -> None:
    runtime, exits = kit.listening()
    runtime.start(kit.config(runtime, "r5"))
    serving(runtime, "r5")
    runtime.pause("r5")
    runtime.pause("r5")  # already paused: as SIGSTOP twice
    assert info(runtime, "r5").state is NodeState.PAUSED
    result = runtime.probe("r5", 0.2)
    assert not result.ok and result.error == "timed out"
    runtime.resume("r5")
    assert info(runtime, "r5").state is NodeState.RUNNING
    assert runtime.probe("r5", 0.5).ok
    runtime.pause("r5")
    started = time.monotonic()
    runtime.stop("r5", timeout=2.0)  # resumed first: a graceful stop, not the SIGKILL timeout
    assert time.monotonic() - started < 1.5
    assert exits.names == ["r5"]
    with pytest.raises(RuntimeError_):
        runtime.pause("r5")
    # A paused node can be killed as well.
    runtime.start(kit.config(runtime, "r5b"))
    serving(runtime, "r5b")
    runtime.pause("r5b")
    runtime.kill("r5b")
    assert info(runtime, "r5b").state is NodeState.EXITED and exits.count("r5b") == 1


def test_requests_that_cannot_succeed_are_permanent_errors(kit: Kit) -> None:
    runtime = kit.runtime()
    host = kit.config(runtime, "x0").host
    for config in (NodeConfig("x1", "redis", "0.0.1", host, 6379, 64),  # not installed / no image
                   NodeConfig("x2", "mysql", "8.0", host, 3306, 64)):
        with pytest.raises(RuntimeError_) as caught:
            runtime.start(config)
        assert not caught.value.temporary, config
    assert runtime.inspect("nope") is None and runtime.inspect("../etc") is None
    assert not runtime.probe("nope", 0.1).ok
    with pytest.raises(RuntimeError_):
        runtime.resume("nope")
    with pytest.raises(RuntimeError_):
        runtime.pause("nope")


def test_parallel_starts_from_many_threads(kit: Kit) -> None:
    runtime, exits = kit.listening()
    configs = [kit.config(runtime, f"p{i}", "redis" if i % 2 else "memcached") for i in range(8)]
    errors: list[BaseException] = []

    def go(config: NodeConfig) -> None:
        try:
            runtime.start(config)
            serving(runtime, config.name)
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


# --- runtimes of real nodes ---


def test_a_redis_node_runs_as_configured_and_restarts_without_its_data(real: Kit) -> None:
    runtime, _ = real.listening()
    config = real.config(runtime, "r1", labels={"cluster": "web", "node": "0001"})
    started = runtime.start(config)
    assert started.labels == {"cluster": "web", "node": "0001"}
    serving(runtime, "r1")
    host, port = config.host, config.port
    # The node is a plain host process on its own address (docker: host network and pids).
    assert f"process_id:{started.pid}\r\n".encode() in redis_cmd(host, port, "INFO", "server")
    assert redis_cmd(host, port, "CONFIG", "GET", "maxmemory").endswith(b"67108864\r\n")
    assert redis_cmd(host, port, "CONFIG", "GET", "save").endswith(b"$0\r\n\r\n")
    assert redis_cmd(host, port, "SET", "k", "v1") == b"+OK\r\n"
    assert redis_cmd(host, port, "SAVE") == b"+OK\r\n"
    runtime.kill("r1")
    runtime.start(config)  # the same directory / container and volume, but as on AWS: no data
    serving(runtime, "r1")
    assert redis_cmd(host, port, "GET", "k") == b"$-1\r\n"
    assert redis_cmd(host, port, "SET", "k", "v3") == b"+OK\r\n"
    runtime.stop("r1")  # SIGTERM: nothing is saved on the way out (test_rdb.py: with AOF it is)
    runtime.start(config)
    serving(runtime, "r1")
    assert redis_cmd(host, port, "GET", "k") == b"$-1\r\n"


def test_memcached_node_lifecycle(real: Kit) -> None:
    runtime, exits = real.listening()
    config = real.config(runtime, "m1", "memcached", threads=2)
    started = runtime.start(config)
    result = serving(runtime, "m1")
    assert result.role is None and result.version == config.version
    assert mc_cmd(config.host, config.port, b"set k 0 0 2\r\nv1\r\n") == b"STORED\r\n"
    assert mc_cmd(config.host, config.port, b"get k\r\n") == b"VALUE k 0 2\r\nv1\r\nEND\r\n"
    stats = mc_cmd(config.host, config.port, b"stats settings\r\n")
    assert b"STAT maxbytes 67108864\r\n" in stats and b"STAT num_threads 2\r\n" in stats
    runtime.kill("m1")
    assert exits.count("m1") == 1
    assert runtime.start(config).pid != started.pid
    serving(runtime, "m1")
    runtime.stop("m1")
    assert exits.count("m1") == 2
    runtime.remove("m1")
    assert runtime.inspect("m1") is None


def test_stats_are_the_engines_own_counters(kit: Kit) -> None:
    runtime, _ = kit.listening()
    redis = kit.config(runtime, "r1")
    memcached = kit.config(runtime, "m1", "memcached")
    assert runtime.node_stats("r1", 1.0) is None  # no such node: nothing, never an error
    runtime.start(redis)
    runtime.start(memcached)
    serving(runtime, "r1")
    serving(runtime, "m1")
    stats = runtime.node_stats("r1", 1.0)
    assert stats is not None
    fields = stats.fields
    assert fields["role"] == "master" and int(fields["used_memory"]) > 0
    for counter in ("connected_clients", "instantaneous_ops_per_sec", "master_repl_offset"):
        int(fields[counter])
    stats = runtime.node_stats("m1", 1.0)
    assert stats is not None
    for counter in ("bytes", "curr_connections", "cmd_get", "cmd_set"):
        int(stats.fields[counter])
    runtime.pause("r1")
    try:
        assert runtime.node_stats("r1", 0.2) is None  # frozen: no answer within the timeout
    finally:
        runtime.resume("r1")
    runtime.kill("m1")
    assert runtime.node_stats("m1", 1.0) is None


def test_nodes_are_readopted_by_a_new_runtime(real: Kit) -> None:
    first, first_exits = real.listening()
    config = real.config(first, "r2")
    pid = first.start(config).pid
    serving(first, "r2")
    first.close()  # the control plane goes away; the node does not

    second, second_exits = real.listening()
    assert second.list_managed() == [
        NodeInfo("r2", NodeState.RUNNING, "redis", config.version, config.host, config.port, pid, {})
    ]
    assert second.probe("r2", 0.5).ok
    assert second.start(config).pid == pid  # running: adopted as it is
    second.kill("r2")
    assert second_exits.names == ["r2"]
    assert info(second, "r2").state is NodeState.EXITED
    assert first_exits.names == []


def test_an_exit_from_outside_is_noticed_at_once(real: Kit) -> None:
    """A crash (or `docker kill` by someone else) of a node this runtime re-adopted."""
    first = real.runtime()
    pid = first.start(real.config(first, "r3")).pid
    assert pid is not None
    first.close()
    runtime, exits = real.listening()
    assert info(runtime, "r3").state is NodeState.RUNNING  # inspect adopts and watches
    killed = time.monotonic()
    kill_from_outside(real, runtime, "r3", pid)
    assert exits.wait_for("r3")
    assert time.monotonic() - killed < 1.0  # an event, not a poll
    assert info(runtime, "r3").state is NodeState.EXITED


def kill_from_outside(kit: Kit, runtime: Any, name: str, pid: int) -> None:
    if kit.kind == "docker":
        import docker

        client = docker.DockerClient.from_env(timeout=30)
        try:
            client.containers.get(runtime.container_name(name)).kill()
        finally:
            client.close()
    else:
        os.kill(pid, signal.SIGKILL)


def test_address_in_use_is_reported_before_starting(real: Kit) -> None:
    runtime, _ = real.listening()
    config = real.config(runtime, "r6")
    with socket.socket() as squatter:
        squatter.bind((config.host, config.port))
        squatter.listen(1)
        with pytest.raises(RuntimeError_, match="already in use") as caught:
            runtime.start(config)
    assert caught.value.temporary
    if real.kind == "process":
        assert info(runtime, "r6").state is NodeState.EXITED  # its directory was written
    else:
        assert runtime.inspect("r6") is None  # no container was created


def test_start_grace_reports_an_immediate_exit_with_the_log(real: Kit) -> None:
    grace = 1.0 if real.kind == "process" else 2.0
    runtime = real.runtime(start_grace=grace)
    config = real.config(runtime, "r7", settings={"no-such-directive": "1"})
    started = time.monotonic()
    with pytest.raises(RuntimeError_, match="exited at once") as caught:
        runtime.start(config)
    assert time.monotonic() - started < grace - 0.1  # returns as soon as the node exits
    assert "no-such-directive" in str(caught.value) and not caught.value.temporary
    assert info(runtime, "r7").state is NodeState.EXITED


def test_invalid_names_and_settings_are_permanent_errors(real: Kit) -> None:
    runtime = real.runtime()
    good = real.config(runtime, "x0")
    for config in (NodeConfig("../x", "redis", good.version, good.host, 6379, 64),  # not a file/container name
                   NodeConfig("x3", "redis", good.version, good.host, 6379, 64, settings={"a": "1\n2"})):
        with pytest.raises(RuntimeError_) as caught:
            runtime.start(config)
        assert not caught.value.temporary, config


def test_replicate_and_move_addresses_over_tcp(real: Kit) -> None:
    runtime, _ = real.listening()
    primary = real.config(runtime, "rp")
    replica = real.config(runtime, "rr")
    addresses = PROCESS_ADDRESSES if real.kind == "process" else DOCKER_ADDRESSES
    floating, _ = addresses.allocate(6379, ())
    for config in (primary, replica):
        runtime.start(config)
        serving(runtime, config.name)
    redis_cmd(primary.host, primary.port, "SET", "k", "v")
    runtime.replicate("rr", (primary.host, primary.port))
    eventually(lambda: redis_cmd(replica.host, replica.port, "GET", "k") == b"$1\r\nv\r\n", 5.0, 0.01,
               "the replica has the primary's data")
    runtime.set_addresses("rp", [floating])  # a floating endpoint address, bound at run time
    assert redis_cmd(floating, primary.port, "GET", "k") == b"$1\r\nv\r\n"
    runtime.set_addresses("rp", [])
    with pytest.raises(OSError):
        redis_cmd(floating, primary.port, "PING")


def test_node_stats_read_the_engines_own_counters_and_the_cpu_used(real: Kit) -> None:
    runtime, _ = real.listening()
    redis = real.config(runtime, "r1")
    mc = real.config(runtime, "m1", "memcached")
    runtime.start(redis)
    runtime.start(mc)
    serving(runtime, "r1")
    serving(runtime, "m1")
    before = runtime.node_stats("r1", 2.0)
    assert before is not None and before.engine == "redis" and before.fields["role"] == "master"
    assert before.cpu_seconds is not None and before.write_calls is not None and before.read_calls is not None
    redis_cmd(redis.host, redis.port, "SET", "k", "v")
    redis_cmd(redis.host, redis.port, "GET", "k")
    redis_cmd(redis.host, redis.port, "GET", "missing")
    after = runtime.node_stats("r1", 2.0)
    assert after is not None and after.at > before.at
    assert after.write_calls == before.write_calls + 1 and after.read_calls == before.read_calls + 2
    assert int(after.fields["keyspace_hits"]) == int(before.fields["keyspace_hits"]) + 1
    assert int(after.fields["keyspace_misses"]) == int(before.fields["keyspace_misses"]) + 1
    assert after.fields["db0"].startswith("keys=1,")
    mc_cmd(mc.host, mc.port, b"set k 0 0 2\r\nv1\r\n")
    mc_cmd(mc.host, mc.port, b"get k\r\n")
    stats = runtime.node_stats("m1", 2.0)
    assert stats is not None and stats.engine == "memcached" and stats.read_calls is None
    assert stats.fields["cmd_set"] == "1" and stats.fields["get_hits"] == "1" and stats.fields["curr_items"] == "1"
    assert stats.cpu_seconds is not None
    runtime.kill("r1")
    assert runtime.node_stats("r1", 1.0) is None  # exited: no stats
    assert runtime.node_stats("nope", 1.0) is None


def test_apply_config_changes_a_running_node_and_its_next_start(kit: Kit) -> None:
    """Parameter groups' immediate changes: CONFIG SET on the running node, kept for its next start."""
    runtime, _ = kit.listening()
    config = kit.config(runtime, "r1")
    runtime.start(config)
    serving(runtime, "r1")
    runtime.apply_config("r1", {"maxmemory-policy": "allkeys-lru", "notify-keyspace-events": "Ex"})
    if kit.kind != "fake":
        assert redis_cmd(config.host, config.port, "CONFIG", "GET", "maxmemory-policy").endswith(
            b"allkeys-lru\r\n")
        assert b"xE" in redis_cmd(config.host, config.port, "CONFIG", "GET", "notify-keyspace-events")
    for refused in ({"bind": "127.0.0.9"}, {"dir": "/tmp"}, {"timeout": "1\nbind 0.0.0.0"}):
        with pytest.raises(RuntimeError_):
            runtime.apply_config("r1", refused)
    if kit.kind != "fake":  # the engine itself refuses a value it does not take
        with pytest.raises(RuntimeError_):
            runtime.apply_config("r1", {"maxmemory-policy": "nonsense"})
    else:  # kept with the node's config, for its next start
        assert runtime.config_of("r1").settings["maxmemory-policy"] == "allkeys-lru"  # type: ignore[attr-defined]
    runtime.start(kit.config(runtime, "m1", "memcached"))
    with pytest.raises(RuntimeError_):
        runtime.apply_config("m1", {"-c": "10"})
