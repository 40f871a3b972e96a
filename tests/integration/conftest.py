"""Docker-specific tests: the docker runtime on its own, and a live service on it.

They skip with the reason where no Docker engine is reachable, and fail instead in CI (CI=true),
where .ci/run installs and starts Docker and builds the local images (deploy/docker-setup.sh).
Every container and volume a test creates is removed by the fixture that made it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.docker import LABEL, DockerRuntime
from tests.api.conftest import LiveServer, require_docker, running_server
from tests.runtimes import DOCKER_IMAGES, DockerKit, Exits, kit_for

IMAGES = DOCKER_IMAGES


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
def kit(docker_ready: None, tmp_path: Path) -> Iterator[DockerKit]:
    """Docker runtimes of one test-only owner; at the end every node of that owner is removed."""
    with kit_for("docker", tmp_path) as made:
        assert isinstance(made, DockerKit)
        yield made


@pytest.fixture
def make_runtime(kit: DockerKit) -> Factory:
    return kit.runtime


@pytest.fixture
def rt(kit: DockerKit) -> tuple[DockerRuntime, Exits]:
    runtime, exits = kit.listening()
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
