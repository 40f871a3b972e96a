"""The control loop: worker threads take resource keys off a queue and reconcile them.

Level-triggered: a reconcile reads the spec and what is observed, takes the next step and
writes status; it is safe to repeat. Keys come from handlers (after a spec change), from the
runtime (a node exited), from retries, and from a periodic resync that catches anything missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from controlplane.reconciler.errors import PermanentError, Requeue, TemporaryError
from controlplane.reconciler.workqueue import WorkQueue
from controlplane.state.records import ResourceKey
from controlplane.state.store import Store

log = logging.getLogger("elasticache_local.reconciler")


class KindReconciler(Protocol):
    kind: str

    def reconcile(self, key: ResourceKey) -> None: ...

    def fail(self, key: ResourceKey, message: str) -> None:
        """Record a permanent failure (status and event)."""
        ...

    def startup(self) -> None:
        """Called once before the workers start (re-adopt nodes, rebuild indexes)."""
        ...


# Told of every pass: (resource kind, seconds, outcome: done | requeue | retry | failed | error).
ReconcileObserver = Callable[[str, float, str], None]


class Controller:
    def __init__(
        self,
        store: Store,
        queue: WorkQueue[ResourceKey],
        *,
        workers: int = 4,
        resync_interval: float = 2.0,
        observe: ReconcileObserver | None = None,
    ) -> None:
        self._store = store
        self.queue = queue
        self._workers = workers
        self._resync_interval = resync_interval
        self._reconcilers: dict[str, KindReconciler] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._failures: dict[ResourceKey, str] = {}
        self._observe = observe

    def register(self, reconciler: KindReconciler) -> None:
        self._reconcilers[reconciler.kind] = reconciler

    def enqueue(self, key: ResourceKey, delay: float = 0.0) -> None:
        self.queue.add_after(key, delay)

    def enqueue_all(self) -> None:
        for key in self._store.resource_keys():
            if key.kind in self._reconcilers:
                self.queue.add(key)

    def wait_idle(self, timeout: float) -> bool:
        """Whether the loop went idle (no key ready, delayed or in a worker) within `timeout` s."""
        return self.queue.wait_idle(timeout)

    # ---- one step ---------------------------------------------------------------------

    def process(self, key: ResourceKey) -> None:
        """Reconcile one key, turning its outcome into a retry, a failure or nothing."""
        reconciler = self._reconcilers.get(key.kind)
        if reconciler is None:
            return
        started = time.perf_counter()
        outcome = self._reconcile(reconciler, key)
        if self._observe is not None:
            try:
                self._observe(key.kind, time.perf_counter() - started, outcome)
            except Exception:  # metrics must never stop the loop
                log.exception("reconcile observer failed")

    def _reconcile(self, reconciler: KindReconciler, key: ResourceKey) -> str:
        try:
            reconciler.reconcile(key)
            self.queue.forget(key)
            self._failures.pop(key, None)
            return "done"
        except Requeue as exc:
            self.queue.forget(key)
            self._failures.pop(key, None)
            log.debug("%s: %s (again in %.3fs)", key, exc, exc.delay)
            self.queue.add_after(key, exc.delay)
            return "requeue"
        except TemporaryError as exc:
            delay = self.queue.backoff(key, exc.delay)
            log.debug("%s: %s (retry in %.2fs)", key, exc, delay)
            self.queue.add_after(key, delay)
            return "retry"
        except PermanentError as exc:
            # Logged once per distinct failure: the resync retries it every few seconds.
            if self._failures.get(key) != str(exc):
                log.warning("%s: %s", key, exc)
                self._failures[key] = str(exc)
            self.queue.forget(key)
            reconciler.fail(key, str(exc))
            return "failed"
        except Exception:
            # A bug must not kill the worker; retry slowly so it is visible but not a hot loop.
            log.exception("reconcile of %s failed unexpectedly", key)
            self.queue.add_after(key, self.queue.backoff(key, 1.0))
            return "error"

    def drain(self, max_steps: int = 1000) -> int:
        """Process ready keys on the calling thread until none is left (tests, fake clock)."""
        steps = 0
        while steps < max_steps:
            key = self.queue.get_nowait()
            if key is None:
                break
            try:
                self.process(key)
            finally:
                self.queue.done(key)
            steps += 1
        return steps

    # ---- threads ----------------------------------------------------------------------

    def start(self, before_workers: Callable[[], object] | None = None) -> None:
        for reconciler in self._reconcilers.values():
            reconciler.startup()
        if before_workers is not None:
            before_workers()  # e.g. remove orphans, while nothing else acts on nodes
        self.enqueue_all()
        for i in range(self._workers):
            t = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._resync, name="resync", daemon=True)
        t.start()
        self._threads.append(t)

    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def _resync(self) -> None:
        while not self._stop.wait(self._resync_interval):
            self.enqueue_all()

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
