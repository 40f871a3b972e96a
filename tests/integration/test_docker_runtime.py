"""The docker runtime against a real Docker engine, with the same contract as the process runtime
(tests/unit/engine/test_process_runtime.py): idempotent start, stop/kill that wait for the exit
and the exit listener, pause/resume, remove deleting the data, re-adoption, exits noticed from
Docker's event stream."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from engine.runtime.base import NodeConfig, NodeInfo, NodeRuntime, NodeState, ProbeResult, RuntimeError_
from engine.runtime.docker import LABEL, DockerRuntime, memory_limit_mb
from tests.integration.conftest import ADDRESSES, Exits, Factory, owned_containers

pytestmark = pytest.mark.docker


def versions(runtime: DockerRuntime, engine: str) -> str:
    found = runtime.available_versions().get(engine)
    if not found:
        pytest.fail(f"no local {engine} image (deploy/build-images.sh builds one from the OS's binary)")
    return found[0]


def node_config(runtime: DockerRuntime, name: str, engine: str, port: int, **kw: Any) -> NodeConfig:
    host, port = ADDRESSES.allocate(port, ())
    return NodeConfig(name=name, engine=engine, version=versions(runtime, engine), host=host, port=port,
                      memory_mb=kw.pop("memory_mb", 64), **kw)


def wait_ready(runtime: NodeRuntime, name: str, limit: float = 5.0) -> ProbeResult:
    started = time.monotonic()
    while True:
        result = runtime.probe(name, 0.5)
        if result.ok:
            return result
        assert time.monotonic() - started < limit, f"{name} not ready after {limit} s: {result.error}"
        time.sleep(0.005)


def redis_cmd(host: str, port: int, *args: str) -> bytes:
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


def test_redis_node_lifecycle(rt: tuple[DockerRuntime, Exits], docker_client: Any) -> None:
    runtime, exits = rt
    protocol: NodeRuntime = runtime
    assert protocol.name == "docker"
    config = node_config(runtime, "r1", "redis", 6379, labels={"cluster": "web", "node": "0001"})
    started = runtime.start(config)
    assert started.state is NodeState.RUNNING and started.pid and started.port == 6379
    assert started.labels == {"cluster": "web", "node": "0001"}
    result = wait_ready(runtime, "r1")
    assert result.role == "master" and result.version == config.version
    # Host networking and host pids: the node is a plain host process on its own address.
    assert redis_cmd(config.host, 6379, "SET", "k", "v1") == b"+OK\r\n"
    assert f"process_id:{started.pid}\r\n".encode() in redis_cmd(config.host, 6379, "INFO", "server")
    assert redis_cmd(config.host, 6379, "CONFIG", "GET", "maxmemory").endswith(b"67108864\r\n")
    assert runtime.start(config).pid == started.pid  # idempotent

    (container,) = owned_containers(docker_client, runtime.owner)
    labels = container.labels
    assert labels[f"{LABEL}.owner"] == runtime.owner and labels[f"{LABEL}.name"] == "r1"
    assert labels[f"{LABEL}.engine"] == "redis" and labels[f"{LABEL}.version"] == config.version
    assert labels[f"{LABEL}.cluster"] == "web" and labels[f"{LABEL}.node"] == "0001"
    host_config = container.attrs["HostConfig"]
    assert host_config["NetworkMode"] == "host" and host_config["PidMode"] == "host"
    assert host_config["Memory"] == memory_limit_mb(64) * 1024 * 1024
    mounts = container.attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [
        ("volume", runtime.container_name("r1"), "/data")]

    runtime.kill("r1")
    assert exits.names.count("r1") == 1  # kill returns after the listener ran
    assert info(runtime, "r1").state is NodeState.EXITED and info(runtime, "r1").pid is None
    assert not runtime.probe("r1", 0.3).ok

    again = runtime.start(config)  # the same container and volume
    assert again.pid != started.pid
    wait_ready(runtime, "r1")
    assert redis_cmd(config.host, 6379, "GET", "k") == b"$-1\r\n"  # killed before any save
    assert redis_cmd(config.host, 6379, "SET", "k", "v2") == b"+OK\r\n"
    runtime.stop("r1")  # SIGTERM: redis saves on the way out
    assert exits.names.count("r1") == 2
    assert info(runtime, "r1").state is NodeState.EXITED
    runtime.start(config)
    wait_ready(runtime, "r1")
    assert redis_cmd(config.host, 6379, "GET", "k") == b"$2\r\nv2\r\n"  # data kept across restarts
    assert "Ready to accept connections" in runtime.logs("r1")

    runtime.stop("r1")
    runtime.stop("r1")  # no-op
    runtime.kill("r1")  # no-op
    runtime.remove("r1")
    assert runtime.inspect("r1") is None and owned_containers(docker_client, runtime.owner) == []
    assert docker_client.volumes.list(filters={"label": f"{LABEL}.owner={runtime.owner}"}) == []
    runtime.remove("r1")  # no-op


def test_memcached_node_lifecycle(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, exits = rt
    config = node_config(runtime, "m1", "memcached", 11211, threads=2)
    started = runtime.start(config)
    result = wait_ready(runtime, "m1")
    assert result.role is None and result.version == config.version
    assert mc_cmd(config.host, 11211, b"set k 0 0 2\r\nv1\r\n") == b"STORED\r\n"
    stats = mc_cmd(config.host, 11211, b"stats settings\r\n")
    assert b"STAT maxbytes 67108864\r\n" in stats and b"STAT num_threads 2\r\n" in stats
    runtime.kill("m1")
    assert exits.wait_for("m1")
    assert runtime.start(config).pid != started.pid
    wait_ready(runtime, "m1")
    runtime.stop("m1")
    assert exits.wait_for("m1", count=2)
    runtime.remove("m1")
    assert runtime.inspect("m1") is None


def test_nodes_are_readopted_by_a_new_runtime(make_runtime: Factory) -> None:
    first = make_runtime()
    first_exits = Exits()
    first.set_exit_listener(first_exits)
    config = node_config(first, "r2", "redis", 6379)
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
    assert second_exits.names == ["r2"]
    assert first_exits.names == []


def test_exits_from_outside_are_noticed_at_once(rt: tuple[DockerRuntime, Exits], docker_client: Any) -> None:
    runtime, exits = rt
    config = node_config(runtime, "r3", "redis", 6379)
    runtime.start(config)
    wait_ready(runtime, "r3")
    container = docker_client.containers.get(runtime.container_name("r3"))
    killed = time.monotonic()
    container.kill()  # `docker kill` by someone else
    assert exits.wait_for("r3", timeout=2.0)
    assert time.monotonic() - killed < 1.0  # an event, not a poll
    assert info(runtime, "r3").state is NodeState.EXITED

    runtime.start(config)
    wait_ready(runtime, "r3")
    redis_cmd(config.host, 6379, "SET", "k", "kept")
    redis_cmd(config.host, 6379, "SAVE")
    docker_client.containers.get(runtime.container_name("r3")).remove(force=True)  # `docker rm -f`
    assert exits.wait_for("r3", count=2)
    gone = info(runtime, "r3")  # the data volume is still there: the node can come back on it
    assert gone.state is NodeState.EXITED and gone.version == config.version
    runtime.start(config)
    wait_ready(runtime, "r3")
    assert redis_cmd(config.host, 6379, "GET", "k") == b"$4\r\nkept\r\n"


def test_pause_resume_and_stop_a_paused_node(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, exits = rt
    runtime.start(node_config(runtime, "r5", "redis", 6379))
    wait_ready(runtime, "r5")
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
    runtime.start(node_config(runtime, "r5b", "redis", 6379))
    wait_ready(runtime, "r5b")
    runtime.pause("r5b")
    runtime.kill("r5b")
    assert info(runtime, "r5b").state is NodeState.EXITED and exits.names.count("r5b") == 1


def test_address_in_use_is_reported_before_starting(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, _ = rt
    config = node_config(runtime, "r6", "redis", 6379)
    with socket.socket() as squatter:
        squatter.bind((config.host, config.port))
        squatter.listen(1)
        with pytest.raises(RuntimeError_, match="already in use") as caught:
            runtime.start(config)
    assert caught.value.temporary
    assert runtime.inspect("r6") is None


def test_start_grace_reports_an_immediate_exit_with_the_log(make_runtime: Factory) -> None:
    runtime = make_runtime(start_grace=2.0)
    config = node_config(runtime, "r7", "redis", 6379, settings={"no-such-directive": "1"})
    started = time.monotonic()
    with pytest.raises(RuntimeError_, match="exited at once") as caught:
        runtime.start(config)
    assert time.monotonic() - started < 1.9  # returns as soon as the node exits
    assert "no-such-directive" in str(caught.value) and not caught.value.temporary
    assert info(runtime, "r7").state is NodeState.EXITED


def test_invalid_requests_are_permanent_errors(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, _ = rt
    version = versions(runtime, "redis")
    bad = [
        NodeConfig("x1", "redis", "0.0.1", "127.0.160.1", 6379, 64),  # no such image, pulling off
        NodeConfig("../x", "redis", version, "127.0.160.1", 6379, 64),  # not a container name
        NodeConfig("x2", "mysql", "8.0", "127.0.160.1", 3306, 64),
        NodeConfig("x3", "redis", version, "127.0.160.1", 6379, 64, settings={"a": "1\n2"}),
        NodeConfig("x4", "redis", version, "127.0.160.1", 6379, 64, settings={"dir": "/"}),
        NodeConfig("x5", "redis", version, "127.0.160.1", 6379, 64, settings={"maxclients": "--dir /"}),
        NodeConfig("x6", "redis", version, "127.0.160.1", 6379, 64, labels={"owner": "someone else"}),
    ]
    for config in bad:
        with pytest.raises(RuntimeError_) as caught:
            runtime.start(config)
        assert not caught.value.temporary, config
    with pytest.raises(RuntimeError_, match=r"build-images\.sh"):
        runtime.start(bad[0])
    assert runtime.inspect("nope") is None and runtime.inspect("../etc") is None
    assert not runtime.probe("nope", 0.1).ok
    with pytest.raises(RuntimeError_):
        runtime.resume("nope")
    assert runtime.list_managed() == []


def test_owners_never_see_each_other(make_runtime: Factory) -> None:
    mine, theirs = make_runtime(), make_runtime(owner="t" + "0" * 7 + "other")
    config = node_config(mine, "r8", "redis", 6379)
    mine.start(config)
    assert theirs.list_managed() == [] and theirs.inspect("r8") is None
    theirs.remove("r8")  # a name it does not own: nothing happens
    assert info(mine, "r8").state is NodeState.RUNNING


def test_volume_only_nodes_are_listed_and_removed(rt: tuple[DockerRuntime, Exits], docker_client: Any) -> None:
    runtime, _ = rt
    runtime.start(node_config(runtime, "r9", "redis", 6379))
    docker_client.containers.get(runtime.container_name("r9")).remove(force=True)
    (listed,) = runtime.list_managed()
    assert listed.name == "r9" and listed.state is NodeState.EXITED
    runtime.remove("r9")
    assert runtime.list_managed() == []


def test_parallel_starts_from_many_threads(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, exits = rt
    configs = [node_config(runtime, f"p{i}", "redis" if i % 2 else "memcached", 6379 if i % 2 else 11211)
               for i in range(8)]
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


def test_replicate_and_move_addresses_over_tcp(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, _ = rt
    primary = node_config(runtime, "rp", "redis", 6379)
    replica = node_config(runtime, "rr", "redis", 6379)
    floating, _ = ADDRESSES.allocate(6379, ())
    for config in (primary, replica):
        runtime.start(config)
        wait_ready(runtime, config.name)
    redis_cmd(primary.host, 6379, "SET", "k", "v")
    runtime.replicate("rr", (primary.host, primary.port))
    deadline = time.monotonic() + 5
    while redis_cmd(replica.host, 6379, "GET", "k") != b"$1\r\nv\r\n":
        assert time.monotonic() < deadline, "the replica never got the primary's data"
        time.sleep(0.01)
    runtime.set_addresses("rp", [floating])  # a floating endpoint address, bound at run time
    assert redis_cmd(floating, 6379, "GET", "k") == b"$1\r\nv\r\n"
    runtime.set_addresses("rp", [])
    with pytest.raises(OSError):
        redis_cmd(floating, 6379, "PING")


def test_ports_networking_publishes_on_the_node_address(make_runtime: Factory, docker_client: Any) -> None:
    """The Docker Desktop fallback: the node's port published on its address (docker-proxy)."""
    runtime = make_runtime(network="ports")
    config = node_config(runtime, "rport", "redis", 6379)
    runtime.start(config)
    wait_ready(runtime, "rport")
    assert redis_cmd(config.host, 6379, "PING") == b"+PONG\r\n"
    attrs = docker_client.containers.get(runtime.container_name("rport")).attrs
    assert attrs["HostConfig"]["NetworkMode"] != "host"
    assert attrs["HostConfig"]["PortBindings"] == {"6379/tcp": [{"HostIp": config.host, "HostPort": "6379"}]}


def test_valkey_node(rt: tuple[DockerRuntime, Exits]) -> None:
    runtime, exits = rt
    if not runtime.available_versions().get("valkey"):
        pytest.skip("no valkey-server here to build a local valkey image from (deploy/build-images.sh)")
    config = node_config(runtime, "v1", "valkey", 6379)
    runtime.start(config)
    result = wait_ready(runtime, "v1")
    assert result.role == "master" and result.version == config.version
    assert b"valkey_version" in redis_cmd(config.host, 6379, "INFO", "server")
    runtime.kill("v1")
    assert exits.names == ["v1"]
