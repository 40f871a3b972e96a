from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from controlplane.admin.api import admin_router
from controlplane.app import build_service
from controlplane.clock import FakeClock
from controlplane.dashboard import routes
from controlplane.reconciler.nodes import POLL
from controlplane.service import Service
from controlplane.settings import Settings
from engine.proxy.hub import Member, ProxyError
from engine.proxy.keyroute import KeyRouteConfig
from engine.runtime.fake import FakeRuntime
from engine.security import TlsFiles
from tests.harness import Caller


class FakeHub:
    """Records endpoint changes instead of binding sockets."""

    def __init__(self) -> None:
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.members: dict[str, list[Member]] = {}
        self.targets: dict[str, tuple[str, int] | None] = {}
        self.endpoint_tls: dict[str, TlsFiles | None] = {}  # the TLS files each config endpoint was given
        self.fail_set_target = 0  # how many set_target calls fail next

    def start(self) -> None: ...

    def close(self) -> None: ...

    def add_memcached_config_endpoint(self, name: str, host: str, port: int, members: Sequence[Member] = (),
                                      tls: TlsFiles | None = None) -> None:
        self.endpoints[name] = (host, port)
        self.endpoint_tls[name] = tls

    def set_members(self, name: str, members: Sequence[Member]) -> None:
        self.members[name] = list(members)

    def remove(self, name: str) -> None:
        self.endpoints.pop(name, None)
        self.members.pop(name, None)
        self.targets.pop(name, None)

    def add_tcp_forwarder(self, name: str, host: str, port: int, target: tuple[str, int] | None) -> None:
        self.endpoints[name] = (host, port)
        self.targets[name] = target

    def set_target(self, name: str, target: tuple[str, int] | None, *, drop_existing: bool = False) -> None:
        if self.fail_set_target > 0 or name not in self.endpoints:
            # What a proxy that died answers (HaproxyForwarders: its admin socket is gone).
            self.fail_set_target = max(0, self.fail_set_target - 1)
            raise ProxyError(f"no proxy endpoint named {name!r}")
        self.targets[name] = target

    def lose(self, name: str) -> None:
        """The proxy behind an endpoint died: its listener and target are gone."""
        self.endpoints.pop(name, None)
        self.targets.pop(name, None)


class FakeKeyRoutes:
    """Records the keyroutes the service asks for instead of running them."""

    def __init__(self) -> None:
        self.routes: dict[str, KeyRouteConfig] = {}
        self.limits: dict[str, int | None] = {}

    def ensure(self, name: str, config: KeyRouteConfig) -> None:
        self.routes[name] = config

    def refresh(self, name: str) -> None: ...

    def limit(self, name: str, ecpu_per_second: int | None) -> None:
        self.limits[name] = ecpu_per_second

    def stop(self, name: str) -> None:
        self.routes.pop(name, None)

    def close(self) -> None:
        self.routes.clear()


class World:
    """A service on the fake runtime and fake clock; the control loop runs only when told."""

    def __init__(self, data_dir: Path, runtime: FakeRuntime | None = None, addressing: str = "loopback",
                 **extra: Any) -> None:
        self.data_dir = data_dir
        self.addressing = addressing
        self.extra = extra  # more settings
        self.runtime = runtime or FakeRuntime()
        self.clock = FakeClock()
        self.hub = FakeHub()
        self.key_routes = FakeKeyRoutes()
        self.service: Service = build_service(self.settings(), self.runtime, self.clock, self.hub, self.key_routes)
        self.service.runtime.set_exit_listener(self.service._node_exited)
        self.service.clusters.startup()
        self.call = Caller(self.service)

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, addressing=self.addressing,  # type: ignore[arg-type]
                        port_range="31000-31099", node_network="127.0.220.0/24",
                        endpoint_network="127.0.221.0/24", **self.extra)

    def settle(self) -> int:
        return self.service.controller.drain()

    def settle_until(self, done: Callable[[], bool], step: float = POLL, rounds: int = 40) -> None:
        """Settle, and while `done` is not yet true move the fake clock on by `step` and settle
        again (bounded): on a loaded machine a pass can use up its READY_WAIT of real time before a
        fake node answers, and its requeue then waits on the fake clock."""
        for _ in range(rounds):
            self.settle()
            if done():
                return
            self.clock.advance(step)
        raise AssertionError(f"not settled after {rounds} rounds of {step} s")

    def restart(self) -> World:
        """A new control plane on the same data directory and the same (still running) nodes."""
        self.service.store.close()
        return World(self.data_dir, self.runtime, self.addressing, **self.extra)

    def events(self, source_id: str | None = None) -> list[str]:
        params = {"SourceType": "cache-cluster", "SourceIdentifier": source_id} if source_id else {}
        return [e["Message"] for e in self.call("DescribeEvents", **params)["Events"]]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.service.store.close()


def whole_app(world: World) -> FastAPI:
    """The web app over the world's service: the Query API, the JSON API and the dashboard."""
    app = FastAPI(docs_url=None, redoc_url=None)
    app.state.service = world.service
    app.include_router(admin_router())
    routes.install(app)
    app.add_api_route("/", world.service.query.endpoint, methods=["GET", "POST"])
    return app
