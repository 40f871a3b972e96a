"""Long work of the control loop (saving a 1 GB RDB, copying or uploading it) on a pool of its own,
so a reconcile never parks a worker for seconds: the reconcile submits the job and requeues; the
job's end enqueues the key again, and that pass reads the result. Jobs live in memory: after a
restart of the service the next pass finds none and submits the work again (it is idempotent)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from controlplane.state.records import ResourceKey


class Jobs:
    def __init__(self, enqueue: Callable[[ResourceKey], None], workers: int = 2) -> None:
        self._enqueue = enqueue
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._jobs: dict[tuple[ResourceKey, str], Future[Any]] = {}

    def submit(self, key: ResourceKey, what: str, work: Callable[[], Any]) -> Future[Any]:
        """Run `work` for `key` unless a job `what` of it already runs (or has ended unread)."""
        with self._lock:
            job = self._jobs.get((key, what))
            if job is None:
                job = self._jobs[(key, what)] = self._pool.submit(work)
                job.add_done_callback(lambda _: self._enqueue(key))
            return job

    def running(self, key: ResourceKey) -> bool:
        with self._lock:
            return any(k == key and not job.done() for (k, _), job in self._jobs.items())

    def take(self, key: ResourceKey, what: str) -> Future[Any] | None:
        """The job `what` of `key` if it has ended (and forget it), else None."""
        with self._lock:
            job = self._jobs.get((key, what))
            if job is None or not job.done():
                return None
            del self._jobs[(key, what)]
            return job

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> bool:
        with self._lock:
            return any(not job.done() for job in self._jobs.values())

    def wait_idle(self, timeout: float) -> bool:
        """Until no job runs (bounded); True when none does (tests, the clock advance)."""
        with self._lock:
            running = [job for job in self._jobs.values() if not job.done()]
        _, pending = wait(running, timeout=timeout)
        return not pending
