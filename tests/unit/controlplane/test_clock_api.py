"""The service clock on the JSON API (GET /api/v1/clock, POST /api/v1/clock/advance) and the CLI
(`elasticache-local clock [advance SECONDS]`), over a service on the fake runtime and clock."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controlplane import cli
from controlplane.admin.api import admin_router
from controlplane.clock import FakeClock
from tests.eventually import eventually
from tests.unit.controlplane.conftest import World

T0 = FakeClock().now()  # Thursday 2026-01-01 12:00 UTC


def _app(world: World) -> FastAPI:
    app = FastAPI()
    app.state.service = world.service
    app.include_router(admin_router())
    return app


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    world.service.controller.start()  # the advance waits for the control loop to act
    try:
        with TestClient(_app(world)) as c:
            yield c
    finally:
        world.service.controller.stop()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_clock_shows_now_and_the_offset(world: World, client: TestClient) -> None:
    reply = client.get("/api/v1/clock")
    assert reply.status_code == 200
    assert _when(reply.json()["now"]) == T0 and reply.json()["offset_seconds"] == 0
    world.clock.advance(90)
    assert client.get("/api/v1/clock").json()["offset_seconds"] == 90


def test_advance_moves_the_clock_through_the_windows(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro",
               PreferredMaintenanceWindow="thu:13:00-thu:14:00", SnapshotWindow="15:00-16:00",
               SnapshotRetentionLimit=1)
    reply = client.post("/api/v1/clock/advance", json={"seconds": 86400})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert _when(body["now"]) == T0 + timedelta(days=1) == world.clock.now()
    assert body["offset_seconds"] == 86400
    assert [(w["resource"], w["window"], _when(w["start"])) for w in body["windows"]] == [
        ("cache-cluster/web", "thu:13:00-thu:14:00", T0.replace(hour=13)),
        ("cache-cluster/web", "15:00-16:00", T0.replace(hour=15)),
    ]
    assert _when(client.get("/api/v1/clock").json()["now"]) == T0 + timedelta(days=1)


@pytest.mark.parametrize("body", [
    {"seconds": 0}, {"seconds": -5}, {"seconds": 400 * 86400 + 1}, {"seconds": "soon"}, {}, {"secs": 5}, None,
])
def test_advance_refuses_bad_bodies_with_400(world: World, client: TestClient, body: Any) -> None:
    reply = client.post("/api/v1/clock/advance", json=body) if body is not None else client.post(
        "/api/v1/clock/advance", content=b"not json", headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert isinstance(reply.json()["detail"], str) and reply.json()["detail"]
    assert world.clock.now() == T0


def test_the_longest_advance_is_allowed(world: World, client: TestClient) -> None:
    reply = client.post("/api/v1/clock/advance", json={"seconds": 400 * 86400})
    assert reply.status_code == 200 and reply.json()["offset_seconds"] == 400 * 86400


# ---- the CLI, against the API served on a loopback port --------------------------------------

@pytest.fixture
def endpoint(world: World) -> Iterator[str]:
    """The JSON API served by uvicorn on 127.0.0.1 (a free port), stopped afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(world), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    world.service.controller.start()
    thread.start()
    try:
        eventually(lambda: server.started, 10, message="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        world.service.controller.stop()


def test_cli_shows_and_advances_the_clock(world: World, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli.main(["clock", "--endpoint", endpoint]) == 0
    assert _when(json.loads(capsys.readouterr().out)["now"]) == T0
    assert cli.main(["clock", "--endpoint", endpoint, "advance", "3600"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["offset_seconds"] == 3600 and shown["windows"] == []
    assert cli.main(["clock", "advance", "60", "--endpoint", endpoint + "/"]) == 0  # either order
    assert json.loads(capsys.readouterr().out)["offset_seconds"] == 3660
    assert world.clock.now() == T0 + timedelta(seconds=3660)


def test_cli_reports_a_refusal_and_an_absent_service(world: World, endpoint: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["clock", "--endpoint", endpoint, "advance", "0"]) == 1
    assert "refused" in capsys.readouterr().err and world.clock.now() == T0
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert cli.main(["clock", "--endpoint", closed]) == 1
    assert "not answering" in capsys.readouterr().err
