"""Two (three) instances of the session app sharing sessions through a live replication group:
continuity across instances, expiry on time, and a user who stays logged in through a TestFailover."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis

from examples import common
from examples.sessions.app import start_instance, stop_instance
from tests.api.conftest import LiveServer
from tests.eventually import eventually

GROUP = "test-sessions"


@pytest.fixture
def instances(service: LiveServer) -> Iterator[dict[str, str]]:
    """Instances a and b (sessions of 60 s) and c (sessions of 2 s), stopped at the end."""
    common.replication_group(common.elasticache(), GROUP, replicas=1)
    started = {name: start_instance(name, GROUP, ttl) for name, ttl in (("a", 60), ("b", 60), ("c", 2))}
    try:
        for _, url in started.values():
            eventually(lambda url=url: _answers(url), timeout=30, interval=0.1, message=f"{url} starting")
        yield {name: url for name, (_, url) in started.items()}
    finally:
        for proc, _ in started.values():
            stop_instance(proc)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_sessions(instances: dict[str, str]) -> None:
    a, b, c = instances["a"], instances["b"], instances["c"]
    ec = common.elasticache()
    with httpx.Client(timeout=10) as browser:
        # Logged in on a, logged in on b: the session lives in the cache, not in an instance.
        assert browser.get(b + "/me").status_code == 401
        assert browser.post(a + "/login", json={"user": "alice"}).status_code == 200
        me = browser.get(b + "/me")
        assert me.status_code == 200 and me.json() == {"user": "alice", "login_instance": "a", "instance": "b"}

        # Sessions end on time: c gives 2 s sessions, seen expiring from a.
        with httpx.Client(timeout=10) as other:
            logged_in = time.monotonic()
            assert other.post(c + "/login", json={"user": "bob"}).status_code == 200
            assert other.get(a + "/me").json()["user"] == "bob"
            eventually(lambda: other.get(a + "/me").status_code == 401, timeout=10, interval=0.05,
                       message="bob's session expiring")
            assert 1.9 <= time.monotonic() - logged_in < 4

        # Drill: TestFailover while alice keeps clicking on a and b. She is never logged out (503 at
        # worst, while the store cannot be reached), and it is over without restarting anything.
        (host, port), _ = common.group_endpoints(common.replication_group(ec, GROUP))
        primary = redis.Redis(host=host, port=port, socket_timeout=2)
        assert primary.wait(1, 2000) == 1  # her session is on the replica, as it would be after a moment
        seen: Counter[int] = Counter()

        def click() -> None:
            for url in (a, b):
                seen[browser.get(url + "/me").status_code] += 1

        with common.Repeat(click) as alice:
            took = common.failover_under(ec, GROUP, primary, alice)
            calls = alice.calls
            eventually(lambda: alice.calls > calls + 3, timeout=10)
        print(f"\ndrill: failed over in {took:.2f} s; alice's requests got {dict(seen)}, the slowest pair took "
              f"{alice.slowest * 1000:.0f} ms")
        assert alice.failures == [] and seen[401] == 0 and set(seen) <= {200, 503}
        for url in (a, b):
            assert browser.get(url + "/me").json()["user"] == "alice"
        assert browser.post(b + "/login", json={"user": "carol"}).status_code == 200  # writes work again
        assert browser.get(a + "/me").json()["user"] == "carol"
    common.delete(ec, group_id=GROUP)
