"""Fan-out of the live feed to its subscribers, as server-sent events.

`publish` is called from any thread (store writers, the event log, the health monitor) and never
blocks or raises: it appends to each matching subscriber's bounded queue and wakes its reader on
the event loop. A subscriber that falls `limit` messages behind (a slow or vanished client) loses
what was queued: its queue is emptied and its reader sends a `gap` message (how many were lost)
before the ones that follow, so a page knows to read the resources afresh. Memory per subscriber
is bounded; writers are never slowed.

Message ids are one sequence across the feed. A reconnecting client's Last-Event-ID is not used:
nothing is replayed (a client reads the resources afresh after a reconnect or a gap)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("elasticache_local.feed")

KEEPALIVE = 15.0  # seconds between `: keepalive` comments on a quiet stream
LIMIT = 1000  # messages a subscriber may fall behind before it loses them
RETRY_MS = 1000  # how soon an EventSource reconnects after the stream ends


@dataclass(frozen=True)
class Message:
    id: int
    event: str
    account: str | None
    region: str | None
    frame: bytes  # the message as an SSE frame


def frame(event: str, data: Mapping[str, Any], message_id: int | None = None) -> bytes:
    head = f"id: {message_id}\n" if message_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscription:
    """One reader's queue. Its methods other than `offer` run on the reader's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, account: str | None, region: str | None, limit: int) -> None:
        self._loop = loop
        self.account = account
        self.region = region
        self._limit = limit
        self._queue: deque[Message] = deque()
        self.missed = 0  # messages lost since the reader last took its queue
        self._wake = asyncio.Event()
        self._waking = False
        self.closed = False

    def wants(self, message: Message) -> bool:
        return ((self.account is None or message.account in (None, self.account))
                and (self.region is None or message.region in (None, self.region)))

    def offer(self, message: Message) -> None:
        """Queue a message (the broadcaster's lock is held). Never blocks."""
        if len(self._queue) >= self._limit:
            self.missed += len(self._queue)
            self._queue.clear()
        self._queue.append(message)
        self._nudge()

    def close(self) -> None:
        self.closed = True
        self._nudge()

    def _nudge(self) -> None:
        if self._waking:
            return  # the reader has not woken since the last nudge: one is enough
        self._waking = True
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # its loop is closed: the reader is gone
            self.closed = True

    def take(self, lock: threading.Lock) -> tuple[list[Message], int]:
        with lock:
            batch, missed = list(self._queue), self.missed
            self._queue.clear()
            self.missed = 0
            self._waking = False
            self._wake.clear()
        return batch, missed

    async def woken(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            return True
        except TimeoutError:
            return False


class Broadcaster:
    def __init__(self, *, limit: int = LIMIT, keepalive: float = KEEPALIVE) -> None:
        self._limit = limit
        self.keepalive = keepalive
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._seq = 0
        self._closed = False

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes: publishers may skip building a message nobody reads."""
        return bool(self._subscribers)

    def publish(self, event: str, data: Mapping[str, Any], account: str | None = None,
                region: str | None = None) -> None:
        """Send a message to every subscriber of its account and region. From any thread."""
        if not self._subscribers:
            return
        try:
            with self._lock:
                self._seq += 1
                message = Message(self._seq, event, account, region, frame(event, data, self._seq))
                for subscriber in self._subscribers:
                    if subscriber.wants(message):
                        subscriber.offer(message)
                self._subscribers = [s for s in self._subscribers if not s.closed]
        except Exception:  # a feed's trouble is never its publisher's
            log.exception("publishing %s failed", event)

    def subscribe(self, account: str | None = None, region: str | None = None) -> Subscription:
        """A new subscription, read on the running event loop."""
        subscription = Subscription(asyncio.get_running_loop(), account, region, self._limit)
        with self._lock:
            if self._closed:
                subscription.closed = True
            else:
                self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscription.closed = True
            self._subscribers = [s for s in self._subscribers if s is not subscription]

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """End every stream (the service stops)."""
        with self._lock:
            self._closed = True
            for subscription in self._subscribers:
                subscription.close()
            self._subscribers = []

    async def frames(self, account: str | None = None, region: str | None = None) -> AsyncIterator[bytes]:
        """The SSE byte stream of one subscriber, until the client goes or the service stops."""
        subscription = self.subscribe(account, region)
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            while not subscription.closed:
                batch, missed = subscription.take(self._lock)
                if missed:
                    yield frame("gap", {"missed": missed})
                if batch:
                    yield b"".join(m.frame for m in batch)
                    continue
                if not await subscription.woken(self.keepalive):
                    yield b": keepalive\n\n"
        finally:
            self.unsubscribe(subscription)
