"""Long work of the control loop (saving a 1 GB RDB, copying or uploading it) on threads of its
own, so a reconcile never parks a worker for seconds: the reconcile submits the job and requeues;
the job's end enqueues the key again, and that pass reads the result. Jobs live in memory: after a
restart of the service the next pass finds none and submits the work again (it is idempotent).

Daemon threads, at most `workers` at a time: a save hung on a frozen node must not keep the
service from exiting (a ThreadPoolExecutor's threads are joined at interpreter exit)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from controlplane.state.records import ResourceKey


class Jobs:
    def __init__(self, enqueue: Callable[[ResourceKey], None], workers: int = 2) -> None:
        self._enqueue = enqueue
        self._slots = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self._jobs: dict[tuple[ResourceKey, str], Future[Any]] = {}
        self._closed = False

    def submit(self, key: ResourceKey, what: str, work: Callable[[], Any]) -> Future[Any]:
        """Run `work` for `key` unless a job `what` of it already runs (or has ended unread)."""
        with self._lock:
            job = self._jobs.get((key, what))
            if job is not None:
                return job
            job = self._jobs[(key, what)] = Future()
        threading.Thread(target=self._run, args=(key, job, work), name=f"job-{what}", daemon=True).start()
        return job

    def _run(self, key: ResourceKey, job: Future[Any], work: Callable[[], Any]) -> None:
        with self._slots:
            if self._closed or not job.set_running_or_notify_cancel():
                return
            try:
                job.set_result(work())
            except BaseException as exc:  # the pass that takes the job reads it
                job.set_exception(exc)
        self._enqueue(key)

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

    def forget(self, key: ResourceKey) -> None:
        """Drop the ended jobs of `key` (its record is gone: a new one of the same name must not
        read an old result)."""
        with self._lock:
            for k in [k for k, job in self._jobs.items() if k[0] == key and job.done()]:
                del self._jobs[k]

    def busy(self) -> bool:
        with self._lock:
            return any(not job.done() for job in self._jobs.values())

    def wait_idle(self, timeout: float) -> bool:
        """Until no job runs (bounded); True when none does (tests)."""
        with self._lock:
            running = [job for job in self._jobs.values() if not job.done()]
        _, pending = wait(running, timeout=timeout)
        return not pending

    def close(self) -> None:
        """Jobs not started yet are dropped; running ones end with the process (daemon threads)."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel()
