"""How a reconcile step says it did not finish."""

from __future__ import annotations


class TemporaryError(Exception):
    """Try again after `delay` seconds (the queue backs off further on repeats)."""

    def __init__(self, message: str, delay: float = 0.2) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """Retrying will not help; the reconciler records a failed status and an event."""
