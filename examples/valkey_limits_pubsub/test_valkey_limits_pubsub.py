"""The rate limiter and the fan-out against a live Valkey replication group: exact limits (also
under concurrency), the sliding window, and a TestFailover in the middle of both workloads."""

from __future__ import annotations

import threading
import time

from examples import common
from examples.valkey_limits_pubsub.app import RateLimiter, Subscriber, connect, publish
from tests.api.conftest import LiveServer
from tests.eventually import eventually

GROUP = "test-valkey"


def test_rate_limiter_and_fan_out(service: LiveServer) -> None:
    ec = common.elasticache()
    client = connect(ec, GROUP)
    assert "valkey_version" in client.info("server")
    limiter = RateLimiter(client, limit=5, window_ms=1000)

    # Exactly `limit` per window, from one caller or from eight at once.
    first = time.monotonic()
    assert [limiter.allow("alice") for _ in range(8)] == [True] * 5 + [False] * 3
    allowed: list[bool] = []
    threads = [threading.Thread(target=lambda: allowed.extend(limiter.allow("bob") for _ in range(10)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(allowed) == 80 and sum(allowed) == 5
    # The window slides: alice is let in again once her first requests are a second old, not before.
    eventually(lambda: limiter.allow("alice"), timeout=5, interval=0.05, message="alice's window sliding")
    assert time.monotonic() - first >= 0.95

    # Fan-out: every subscriber receives every notification.
    subscribers = [Subscriber(client, "news") for _ in range(3)]
    for s in subscribers:
        s.start()
    try:
        assert [publish(client, "news", f"m{i}") for i in range(20)] == [3] * 20
        expected = [f"m{i}" for i in range(20)]
        eventually(lambda: all(s.received == expected for s in subscribers), timeout=10, message="fan-out")

        # Drill: TestFailover while callers are limited and notifications go out. The limiter fails
        # open while it cannot reach the primary; subscribers reconnect and subscribe by themselves.
        reached: dict[str, int] = {}

        def traffic() -> None:
            limiter.allow(f"caller-{len(reached) % 7}")
            message = f"d{len(reached)}"
            reached[message] = publish(client, "news", message)

        with common.Repeat(traffic) as load:
            took = common.failover_under(ec, GROUP, client, load)
            eventually(lambda: list(reached.values())[-3:] == [3, 3, 3], timeout=30,
                       message="every subscriber back")  # PUBLISH reaches all three again
        assert load.failures == []
        lost = [m for m, n in reached.items() if n < 3]
        print(f"\ndrill: failed over in {took:.2f} s; {len(reached)} notifications meanwhile, {len(lost)} reached "
              f"fewer than 3 subscribers; the limiter failed open {limiter.unavailable} times; slowest step "
              f"{load.slowest * 1000:.0f} ms; subscriber errors {[s.errors for s in subscribers]}")
        # Whatever PUBLISH said reached everyone did reach everyone, and limits hold on the new primary.
        delivered = {m for m, n in reached.items() if n == 3}
        eventually(lambda: all(delivered <= set(s.received) for s in subscribers), timeout=10,
                   message="delivery of what PUBLISH counted")
        # (Seen once: a PUBLISH reached 2 right after three in a row had reached all 3; bounded wait.)
        eventually(lambda: publish(client, "news", "after") == 3, timeout=10, interval=0.1,
                   message="PUBLISH reaching all three subscribers")
        assert [limiter.allow("carol") for _ in range(7)] == [True] * 5 + [False] * 2
    finally:
        for s in subscribers:
            s.stop()
    common.delete(ec, group_id=GROUP)
