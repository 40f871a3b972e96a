"""Exit watching for the docker runtime: Docker's event stream, read by one thread.

Exits are noticed without polling: the thread reads the die events of this owner's containers
and calls the exit listener at once; after the daemon's stream breaks it reconnects and replays
what it missed (`since`), then reports every node of ours that is not running, since a
restarted Docker engine stops containers without keeping their events.

kill()/stop() count a container's die events before they act and wait until the count has
grown, so they return only once the listener has heard of the exit they caused.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from engine.runtime.base import ExitListener, RuntimeError_, tell_exit
from engine.runtime.docker.api import docker_error
from engine.runtime.docker.spec import L_NAME, LIVE, owner_filter

__all__ = ["DieEvents"]

log = logging.getLogger(__name__)

# How long kill/stop wait for the exit listener to have run: Docker's die event can lag the exit
# by seconds when the engine is busy (8 containers started and killed at once on 2 loaded cores).
_LISTENER_WAIT = 5.0
_RECONNECT_MAX = 5.0  # the longest pause between reconnection attempts


class DieEvents:
    """The die events of `owner`'s containers, from the Docker engine behind `api` (a client of
    its own: the stream holds its connection for ever), passed to the exit listener."""

    def __init__(self, api: Any, sweep_api: Any, owner: str) -> None:
        self._api = api
        self._sweep_api = sweep_api  # lists containers after a reconnection
        self._owner = owner
        self._listener: ExitListener | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._deaths: dict[str, int] = {}  # container id -> die events dispatched
        self._dispatched = threading.Condition(self._lock)
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def listen(self, listener: ExitListener) -> None:
        """Tell `listener` of every exit from now on: the stream is connected before this
        returns, so no exit after it is missed."""
        self._listener = listener
        with self._lock:
            if self._thread is not None or self._closing.is_set():
                return
        stream = self._open(None)
        thread = threading.Thread(target=self._read, args=(stream,), name="docker-events", daemon=True)
        with self._lock:
            self._stream = stream
            self._thread = thread
        thread.start()

    def deaths(self, cid: str) -> int:
        """How many die events of container `cid` have been passed on: take it before acting."""
        with self._lock:
            return self._deaths.get(cid, 0)

    def await_dispatch(self, cid: str, seen: int) -> None:
        """Wait until the exit listener has been told of one more death of `cid` than `seen`,
        so a start() that follows cannot be mistaken for this exit (unless we are the listener
        ourselves, or nobody listens)."""
        with self._lock:
            thread = self._thread
        if thread is None or thread is threading.current_thread() or self._closing.is_set():
            return
        with self._dispatched:
            if not self._dispatched.wait_for(lambda: self._deaths.get(cid, 0) > seen, timeout=_LISTENER_WAIT):
                log.warning("container %s exited but Docker reported no die event within %.0f s", cid[:12],
                            _LISTENER_WAIT)

    def close(self) -> None:
        """Stop reading: close the stream (which ends the thread's read) and join the thread."""
        self._closing.set()
        with self._lock:
            stream, thread = self._stream, self._thread
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if thread is not None:
            thread.join(timeout=5.0)

    def _open(self, since: str | None) -> Any:
        filters = {**owner_filter(self._owner), "type": ["container"], "event": ["die", "oom"]}
        try:
            return self._api.events(since=since, filters=filters, decode=True)
        except Exception as exc:
            raise docker_error("watch Docker events", exc) from exc

    def _read(self, stream: Any) -> None:
        last: tuple[int, str] | None = None  # (timeNano, "id action") of the last event handled
        pause = 0.1
        while not self._closing.is_set():
            try:
                for event in _events(stream):
                    key = (int(event.get("timeNano") or 0), f"{event.get('id')} {event.get('Action')}")
                    if last is not None and key <= last:
                        continue  # replayed after a reconnection
                    last = key
                    self._handle(event)
                    pause = 0.1
            except Exception:
                if not self._closing.is_set():
                    log.exception("reading Docker events failed")
            if self._closing.is_set():
                return
            # The stream ended (the Docker engine restarted?): reconnect and replay what we missed.
            self._closing.wait(pause)
            pause = min(pause * 2, _RECONNECT_MAX)
            new = self._reconnect(last)
            if new is None:
                continue
            if self._closing.is_set():
                with contextlib.suppress(Exception):
                    new.close()
                return
            stream = new
            log.info("Docker event stream reconnected")
            self._sweep()

    def _reconnect(self, last: tuple[int, str] | None) -> Any:
        since = f"{last[0] // 1_000_000_000}.{last[0] % 1_000_000_000:09d}" if last else None
        try:
            stream = self._open(since)
        except RuntimeError_ as exc:
            log.warning("Docker event stream lost, reconnecting: %s", exc)
            return None
        with self._lock:
            self._stream = stream
        return stream

    def _sweep(self) -> None:
        """After a gap in the event stream: report every node of ours that is not running, since
        its exit may not have been replayed. Reporting a node twice is harmless: the listener
        re-inspects."""
        try:
            containers = self._sweep_api.containers(all=True, filters=owner_filter(self._owner))
        except Exception as exc:
            log.warning("cannot list containers after reconnecting: %s", exc)
            return
        for container in containers:
            name = (container.get("Labels") or {}).get(L_NAME)
            if name and container.get("State") not in LIVE:
                tell_exit(self._listener, name)

    def _handle(self, event: Mapping[str, Any]) -> None:
        action = event.get("Action") or event.get("status")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        name = attributes.get(L_NAME)
        cid = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
        if not name:
            return
        if action == "oom":
            log.warning("node %s ran out of memory (container limit reached)", name)
            return
        log.info("node %s exited (code %s)", name, attributes.get("exitCode", "?"))
        try:
            if not self._closing.is_set():
                tell_exit(self._listener, name)
        finally:
            with self._dispatched:
                self._deaths[cid] = self._deaths.get(cid, 0) + 1
                self._dispatched.notify_all()


def _events(stream: Any) -> Iterator[dict[str, Any]]:
    yield from stream

