"""A sliding-window rate limiter and a pub/sub notification fan-out on Valkey, both through the
primary endpoint of a Valkey replication group (Engine="valkey", found with DescribeReplicationGroups).

Rate limiter: a sorted set per caller holds the times of its allowed requests; one Lua script (one
atomic step, on the server's clock) drops those older than the window, and admits the request only
while fewer than `limit` remain. While the store cannot be reached the limiter fails open (the
choice most APIs make; `fail_open=False` refuses instead), and counts it.

Fan-out: PUBLISH to a channel reaches every subscriber connected at that moment (its answer says
how many). Pub/sub is fire and forget: a subscriber that is reconnecting misses what is published
meanwhile (use Streams when every message must arrive). Subscribers reconnect and subscribe again
on their own after a failover.

Run: .venv/bin/python -m examples.valkey_limits_pubsub.app   (with `make serve` running)"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from examples import common

GROUP_ID = "example-valkey"
SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 1
end
return 0
"""


def connect(ec: Any, group_id: str = GROUP_ID) -> redis.Redis:
    """The Valkey group's primary endpoint (the group is created when missing, with one replica)."""
    (host, port), _ = common.group_endpoints(common.replication_group(ec, group_id, engine="valkey", replicas=1))
    return redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1,
                       retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 4),
                       retry_on_error=[redis.ConnectionError, redis.TimeoutError])


class RateLimiter:
    def __init__(self, client: redis.Redis, limit: int, window_ms: int, fail_open: bool = True) -> None:
        self.limit, self.window_ms, self.fail_open = limit, window_ms, fail_open
        self.script = client.register_script(SLIDING_WINDOW)
        self.unavailable = 0

    def allow(self, caller: str) -> bool:
        try:
            return bool(self.script(keys=[f"ratelimit:{caller}"], args=[self.window_ms, self.limit, uuid.uuid4().hex]))
        except redis.RedisError:
            self.unavailable += 1
            return self.fail_open


class Subscriber(threading.Thread):
    """Collects the notifications of one channel; reconnects and subscribes again by itself."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        super().__init__(daemon=True)
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.received: list[str] = []
        self.errors = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.2)
            except redis.RedisError:
                self.errors += 1
                time.sleep(0.05)
                continue
            if message and message["type"] == "message":
                self.received.append(message["data"].decode())

    def stop(self) -> None:
        self._done.set()
        self.join(5)
        self.pubsub.close()


def publish(client: redis.Redis, channel: str, message: str) -> int:
    """PUBLISH; how many subscribers got it (0 when the store could not be reached)."""
    try:
        return int(client.publish(channel, message))
    except redis.RedisError:
        return 0


def main() -> None:
    ec = common.elasticache()
    client = connect(ec)
    server = client.info("server")
    print("engine: valkey", server.get("valkey_version", f"(no: redis {server['redis_version']})"))
    limiter = RateLimiter(client, limit=5, window_ms=1000)
    print("20 requests at once, 5 per second allowed:", sum(limiter.allow("alice") for _ in range(20)), "allowed")
    subscribers = [Subscriber(client, "notifications") for _ in range(3)]
    for s in subscribers:
        s.start()
    reached = [publish(client, "notifications", f"order {i} shipped") for i in range(10)]
    time.sleep(0.3)  # let the subscribers read (a demo; the test waits with a bound instead)
    for s in subscribers:
        s.stop()
    print(f"10 notifications, each reached {min(reached)}-{max(reached)} subscribers; received:",
          [len(s.received) for s in subscribers])
    common.delete(ec, group_id=GROUP_ID)


if __name__ == "__main__":
    main()
