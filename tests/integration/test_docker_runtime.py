"""What only the docker runtime does, against a real Docker engine: labelled containers on
named volumes, host networking, owners, data volumes that outlive their container, published
ports. The contract it shares with the other runtimes (idempotent start, stop/kill that wait
for the exit listener, pause/resume, re-adoption, exits noticed from Docker's event stream) is
in tests/unit/engine/test_runtime_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from engine.runtime.base import NodeConfig, NodeState, RuntimeError_
from engine.runtime.docker import LABEL, DockerRuntime, memory_limit_mb
from tests.integration.conftest import Factory, owned_containers
from tests.runtimes import DockerKit, Exits, info, redis_cmd, serving

pytestmark = pytest.mark.docker


def test_a_node_is_a_labelled_container_on_its_own_volume(
        rt: tuple[DockerRuntime, Exits], kit: DockerKit, docker_client: Any) -> None:
    runtime, _ = rt
    config = kit.config(runtime, "r1", labels={"cluster": "web", "node": "0001"})
    runtime.start(config)
    serving(runtime, "r1")
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
    assert "Ready to accept connections" in runtime.logs("r1")

    runtime.remove("r1")
    assert runtime.inspect("r1") is None and owned_containers(docker_client, runtime.owner) == []
    assert docker_client.volumes.list(filters={"label": f"{LABEL}.owner={runtime.owner}"}) == []


def test_a_container_removed_from_outside_leaves_the_node_its_data(
        rt: tuple[DockerRuntime, Exits], kit: DockerKit, docker_client: Any) -> None:
    runtime, exits = rt
    # Data a node keeps across restarts: AOF (without, it starts empty, as on AWS).
    config = kit.config(runtime, "r3", settings={"appendonly": "yes", "appendfsync": "always"})
    runtime.start(config)
    serving(runtime, "r3")
    redis_cmd(config.host, config.port, "SET", "k", "kept")
    docker_client.containers.get(runtime.container_name("r3")).remove(force=True)  # `docker rm -f`
    assert exits.wait_for("r3")
    gone = info(runtime, "r3")  # the data volume is still there: the node can come back on it
    assert gone.state is NodeState.EXITED and gone.version == config.version
    runtime.start(config)
    serving(runtime, "r3")
    assert redis_cmd(config.host, config.port, "GET", "k") == b"$4\r\nkept\r\n"


def test_invalid_requests_are_permanent_errors(rt: tuple[DockerRuntime, Exits], kit: DockerKit) -> None:
    runtime, _ = rt
    version = kit.config(runtime, "x0").version
    bad = [
        NodeConfig("x4", "redis", version, "127.0.160.1", 6379, 64, settings={"dir": "/"}),
        NodeConfig("x5", "redis", version, "127.0.160.1", 6379, 64, settings={"maxclients": "--dir /"}),
        NodeConfig("x6", "redis", version, "127.0.160.1", 6379, 64, labels={"owner": "someone else"}),
    ]
    for config in bad:
        with pytest.raises(RuntimeError_) as caught:
            runtime.start(config)
        assert not caught.value.temporary, config
    with pytest.raises(RuntimeError_, match=r"build-images\.sh"):
        runtime.start(NodeConfig("x1", "redis", "0.0.1", "127.0.160.1", 6379, 64))  # no such image, pulling off
    assert runtime.list_managed() == []


def test_owners_never_see_each_other(make_runtime: Factory, kit: DockerKit) -> None:
    mine, theirs = make_runtime(), make_runtime(owner="t" + "0" * 7 + "other")
    mine.start(kit.config(mine, "r8"))
    assert theirs.list_managed() == [] and theirs.inspect("r8") is None
    theirs.remove("r8")  # a name it does not own: nothing happens
    assert info(mine, "r8").state is NodeState.RUNNING


def test_volume_only_nodes_are_listed_and_removed(
        rt: tuple[DockerRuntime, Exits], kit: DockerKit, docker_client: Any) -> None:
    runtime, _ = rt
    runtime.start(kit.config(runtime, "r9"))
    docker_client.containers.get(runtime.container_name("r9")).remove(force=True)
    (listed,) = runtime.list_managed()
    assert listed.name == "r9" and listed.state is NodeState.EXITED
    runtime.remove("r9")
    assert runtime.list_managed() == []


def test_ports_networking_publishes_on_the_node_address(
        make_runtime: Factory, kit: DockerKit, docker_client: Any) -> None:
    """The Docker Desktop fallback: the node's port published on its address (docker-proxy)."""
    runtime = make_runtime(network="ports")
    config = kit.config(runtime, "rport")
    runtime.start(config)
    serving(runtime, "rport")
    assert redis_cmd(config.host, config.port, "PING") == b"+PONG\r\n"
    attrs = docker_client.containers.get(runtime.container_name("rport")).attrs
    assert attrs["HostConfig"]["NetworkMode"] != "host"
    assert attrs["HostConfig"]["PortBindings"] == {
        f"{config.port}/tcp": [{"HostIp": config.host, "HostPort": str(config.port)}]}


def test_valkey_node(rt: tuple[DockerRuntime, Exits], kit: DockerKit) -> None:
    runtime, exits = rt
    if not runtime.available_versions().get("valkey"):
        pytest.skip("no valkey-server here to build a local valkey image from (deploy/build-images.sh)")
    config = kit.config(runtime, "v1", "valkey")
    runtime.start(config)
    result = serving(runtime, "v1")
    assert result.role == "master" and result.version == config.version
    assert b"valkey_version" in redis_cmd(config.host, config.port, "INFO", "server")
    runtime.kill("v1")
    assert exits.names == ["v1"]
