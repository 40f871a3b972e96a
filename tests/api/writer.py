"""A client writing through an endpoint in the background, as an application would."""

from __future__ import annotations

import os
import signal
import threading
import time

import redis
from redis.cluster import RedisCluster

from tests.eventually import NotYet, eventually


class Writer:
    """SETs k0, k1, ... in a loop on one client, in a thread: which writes were acknowledged and
    when writes failed. A context manager: the thread stops at the end of the block."""

    def __init__(self, client: redis.Redis | RedisCluster, prefix: str = "k") -> None:
        self.client = client
        self.prefix = prefix
        self.acked: list[int] = []
        self.failures: list[float] = []  # time.monotonic() of each failed write
        self.longest_gap = 0.0  # the longest time in seconds between two acknowledged writes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        i = 0
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                self.client.set(f"{self.prefix}{i}", i)  # `client` may be replaced meanwhile (e.g. by one with TLS)
                self.acked.append(i)
                i += 1
                now = time.monotonic()
                self.longest_gap, last = max(self.longest_gap, now - last), now
            except redis.RedisError:
                self.failures.append(time.monotonic())
                time.sleep(0.005)

    def resumed_after(self, since: float, count: int, timeout: float = 10.0) -> bool:
        """True once `count` more writes than now were acknowledged and none failed after `since`
        (bounded wait)."""
        target = len(self.acked) + count
        try:
            eventually(lambda: len(self.acked) >= target and (not self.failures or self.failures[-1] > since),
                       timeout, 0.01)
        except NotYet:
            return False
        return True

    def writing(self, count: int = 50, timeout: float = 10.0) -> None:
        """Wait until `count` writes have been acknowledged: the client is under way."""
        eventually(lambda: len(self.acked) >= count, timeout, 0.01, f"{count} writes acknowledged")


def kill_primary_under_writer(client: redis.Redis) -> int:
    """kill -9 the redis-server behind `client` while a Writer writes through it, and return its
    pid once writes resume through the same client (the endpoint); fails if they do not."""
    old_pid = int(client.info("server")["process_id"])
    with Writer(client) as writer:
        writer.writing()
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        assert writer.resumed_after(killed_at, 100), "writes did not resume through the primary endpoint"
    return old_pid
