"""A session store with a TTL: a small FastAPI app whose instances share sessions through a
replication group's primary endpoint (found with DescribeReplicationGroups at startup).

POST /login {"user": ...} stores session:<id> with SET ... EX <SESSION_TTL> and sets the cookie;
GET /me answers from whichever instance the request reaches. The store rides through a failover:
the client retries with backoff on connection errors, and answers 503 (never 401: a store that is
failing over has not logged anyone out) while it cannot reach the primary.

Run: .venv/bin/python -m examples.sessions.app   (with `make serve` running: two instances, one
login, the session checked on the other instance)"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis
from fastapi import Cookie, FastAPI, HTTPException, Response
from pydantic import BaseModel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from examples import common

GROUP_ID = os.environ.get("SESSION_GROUP_ID", "example-sessions")
TTL = int(os.environ.get("SESSION_TTL", "1800"))
INSTANCE = os.environ.get("INSTANCE", "app")
store: redis.Redis | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global store
    group = common.elasticache().describe_replication_groups(ReplicationGroupId=GROUP_ID)["ReplicationGroups"][0]
    (host, port), _reader = common.group_endpoints(group)
    store = redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1,
                        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 4),
                        retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    yield
    store.close()


app = FastAPI(lifespan=lifespan)


class Login(BaseModel):
    user: str


def _store() -> redis.Redis:
    assert store is not None
    return store


@app.exception_handler(redis.RedisError)
async def store_unavailable(_: Any, exc: redis.RedisError) -> Response:
    return Response(json.dumps({"detail": f"session store unavailable: {exc}"}), status_code=503,
                    media_type="application/json", headers={"Retry-After": "1"})


@app.get("/health")
def health() -> dict[str, str]:
    return {"instance": INSTANCE}


@app.post("/login")
def login(body: Login, response: Response) -> dict[str, Any]:
    sid = secrets.token_urlsafe(24)
    _store().set(f"session:{sid}", json.dumps({"user": body.user, "login_instance": INSTANCE}), ex=TTL)
    response.set_cookie("sid", sid, httponly=True)  # the store, not the browser, decides when it ends
    return {"user": body.user, "instance": INSTANCE, "ttl": TTL}


@app.get("/me")
def me(sid: str | None = Cookie(default=None)) -> dict[str, Any]:
    data = _store().get(f"session:{sid}") if sid else None
    if data is None:
        raise HTTPException(status_code=401, detail="not logged in")
    return {**json.loads(data), "instance": INSTANCE}


@app.post("/logout")
def logout(response: Response, sid: str | None = Cookie(default=None)) -> dict[str, bool]:
    if sid:
        _store().delete(f"session:{sid}")
    response.delete_cookie("sid")
    return {"ok": True}


def start_instance(name: str, group_id: str = GROUP_ID, ttl: int = TTL) -> tuple[subprocess.Popen[bytes], str]:
    """One instance as its own uvicorn process on a free 127.0.0.1 port: (process, base URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SESSION_GROUP_ID": group_id, "SESSION_TTL": str(ttl), "INSTANCE": name}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "examples.sessions.app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], env=env)
    return proc, f"http://127.0.0.1:{port}"


def stop_instance(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    ec = common.elasticache()
    common.replication_group(ec, GROUP_ID, replicas=1)
    instances = [start_instance("a"), start_instance("b")]
    try:
        with httpx.Client(timeout=5) as browser:  # one browser: the cookie goes to both instances
            for _, url in instances:
                for _attempt in range(100):  # bounded: until the instance answers
                    try:
                        browser.get(url + "/health")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
            print("login on a:", browser.post(instances[0][1] + "/login", json={"user": "alice"}).json())
            print("me on b:   ", browser.get(instances[1][1] + "/me").json())
            browser.post(instances[1][1] + "/logout")
            print("after logout on b, me on a:", browser.get(instances[0][1] + "/me").status_code)
    finally:
        for proc, _ in instances:
            stop_instance(proc)
        common.delete(ec, group_id=GROUP_ID)


if __name__ == "__main__":
    main()
