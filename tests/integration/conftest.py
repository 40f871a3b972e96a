"""Docker-specific tests: the docker runtime on its own, and a live service on it.

They skip with the reason where no Docker engine is reachable, and fail instead in CI (CI=true),
where .ci/run installs and starts Docker and builds the local images (deploy/docker-setup.sh).
Every container and volume a test creates is removed by the fixture that made it."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.addresses import AddressAllocator
from engine.runtime.docker import LABEL, DockerRuntime
from tests.api.conftest import LOCAL_IMAGES, LiveServer, require_docker, running_server

IMAGES = {
    "redis": LOCAL_IMAGES["ELASTICACHE_LOCAL_DOCKER_IMAGE_REDIS"],
    "valkey": LOCAL_IMAGES["ELASTICACHE_LOCAL_DOCKER_IMAGE_VALKEY"],
    "memcached": LOCAL_IMAGES["ELASTICACHE_LOCAL_DOCKER_IMAGE_MEMCACHED"],
}
# A random test-only /24 per session (127.0.160-199.x), apart from the api tests' networks.
ADDRESSES = AddressAllocator(network=f"127.0.{random.randint(160, 199)}.0/24", hold_seconds=600)


class Exits:
    """Exit listener that lets a test wait for a node's exit notification."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, name: str) -> None:
        with self._cond:
            self.names.append(name)
            self._cond.notify_all()

    def wait_for(self, name: str, count: int = 1, timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.names.count(name) >= count, timeout)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    require_docker()


@pytest.fixture
def docker_client(docker_ready: None) -> Iterator[Any]:
    import docker

    client = docker.DockerClient.from_env(timeout=30)
    yield client
    client.close()


Factory = Callable[..., DockerRuntime]


@pytest.fixture
def make_runtime(docker_ready: None) -> Iterator[Factory]:
    """Docker runtimes of one test-only owner; at the end every node of that owner is removed."""
    owner = f"t{random.randrange(16**8):08x}"
    runtimes: list[DockerRuntime] = []

    def make(**kw: Any) -> DockerRuntime:
        kw.setdefault("owner", owner)
        kw.setdefault("images", IMAGES)
        kw.setdefault("pull", False)
        rt = DockerRuntime(**kw)
        runtimes.append(rt)
        return rt

    yield make
    owners = {rt.owner for rt in runtimes} | {owner}
    for rt in runtimes:
        rt.close()
    for each in owners:
        cleaner = DockerRuntime(owner=each, images=IMAGES, pull=False)
        for info in cleaner.list_managed():
            cleaner.remove(info.name)
        assert cleaner.list_managed() == []
        cleaner.close()


@pytest.fixture
def rt(make_runtime: Factory) -> tuple[DockerRuntime, Exits]:
    runtime = make_runtime()
    exits = Exits()
    runtime.set_exit_listener(exits)
    return runtime, exits


@pytest.fixture
def docker_server(docker_ready: None, tmp_path: Path) -> Iterator[LiveServer]:
    """A live service on the docker runtime, of its own (tests restart it); removed at the end
    with every container it owns."""
    data_dir = tmp_path / "service"
    data_dir.mkdir()
    # Apart from the api tests' docker server, in case both run at once.
    with running_server("docker", data_dir, ELASTICACHE_LOCAL_NODE_NETWORK="127.0.124.0/24",
                        ELASTICACHE_LOCAL_ENDPOINT_NETWORK="127.0.125.0/24") as live:
        yield live


def owned_containers(client: Any, owner: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL}.owner={owner}"}))
