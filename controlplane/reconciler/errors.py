"""How a reconcile step says it did not finish."""

from __future__ import annotations


class TemporaryError(Exception):
    """Try again after `delay` seconds (the queue backs off further on repeats)."""

    def __init__(self, message: str, delay: float = 0.2) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """Retrying will not help; the reconciler records a failed status and an event."""


class Requeue(TemporaryError):
    """Not a failure: the step waits for something (a node to answer, a cooldown to pass) and the
    key comes back after `delay` seconds of the injected clock, without backoff. The worker is free
    meanwhile; an event about the key (a node's exit, a spec change) brings it back sooner."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message, delay)
