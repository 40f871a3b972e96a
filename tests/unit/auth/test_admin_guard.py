"""With signatures verified, the JSON API and the dashboard (which act as any account) need the
admin token; without a token set they are closed. The default profile leaves them open."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.clock import FakeClock
from controlplane.settings import Settings
from engine.runtime.fake import FakeRuntime
from tests.unit.auth.conftest import write_credentials

TOKEN = "correct horse battery staple"
GUARDED = ["/api/v1/cache-clusters", "/api/v1/events", "/api/v1/clock", "/dashboard", "/dashboard/fragments/caches"]


def _app(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", l4_proxy="builtin", **settings), FakeRuntime(), FakeClock())
    try:
        yield TestClient(app)  # no lifespan: the service is not started, its store answers
    finally:
        app.state.service.store.close()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp_path = tmp_path_factory.mktemp("strict")
    yield from _app(tmp_path, profile="strict", credentials_file=write_credentials(tmp_path), admin_token=TOKEN)


@pytest.mark.parametrize("path", GUARDED)
def test_without_the_token_the_admin_faces_are_refused(strict: TestClient, path: str) -> None:
    reply = strict.get(path)
    assert reply.status_code == 401
    assert reply.json()["code"] == "MissingAuthenticationToken"
    assert reply.headers["www-authenticate"].startswith("Basic ")  # a browser asks for it
    wrong = strict.get(path, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "AccessDenied"


@pytest.mark.parametrize("path", GUARDED)
def test_with_the_token_they_answer(strict: TestClient, path: str) -> None:
    assert strict.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert strict.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_writes_and_moto_reset_need_it_too(strict: TestClient) -> None:
    body = {"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}
    assert strict.post("/api/v1/cache-clusters", json=body).status_code == 401
    assert strict.post("/moto-api/reset").status_code == 401
    assert strict.post("/dashboard/actions/reset").status_code == 401
    created = strict.post("/api/v1/cache-clusters", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status_code == 201


def test_health_metrics_and_docs_stay_open(strict: TestClient) -> None:
    assert strict.get("/api/v1/health").json()["status"] == "ok"
    assert strict.get("/metrics").status_code == 200
    assert strict.get("/openapi.json").status_code == 200


def test_strict_without_a_token_closes_them(tmp_path: Path) -> None:
    for client in _app(tmp_path, profile="strict", credentials_file=write_credentials(tmp_path)):
        reply = client.get("/api/v1/cache-clusters", headers={"Authorization": "Bearer anything"})
        assert reply.status_code == 403 and "ELASTICACHE_LOCAL_ADMIN_TOKEN" in reply.json()["message"]
        assert client.get("/api/v1/health").status_code == 200


def test_the_default_profile_leaves_them_open(tmp_path: Path) -> None:
    for client in _app(tmp_path):
        assert client.get("/api/v1/cache-clusters").status_code == 200
        assert client.get("/dashboard").status_code == 200
