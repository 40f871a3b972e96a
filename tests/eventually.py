"""The one bounded wait of the test suite: poll a condition until it holds or a deadline passes.

Tests never sleep for a fixed time and never loop without a bound: a condition that does not
come true fails the test with what was last seen, after `timeout` seconds at most."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotYet(AssertionError):
    """The condition did not hold within the timeout."""


def eventually(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02,
               message: str | Callable[[], str] = "") -> T:
    """Call `check` until it returns a truthy value (returned) or `timeout` seconds pass (NotYet).

    `check` may also raise AssertionError while the condition does not hold yet: the last such
    error is kept and shown when time runs out. Any other exception ends the wait at once."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except AssertionError as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            said = message() if callable(message) else message
            raise NotYet(f"{said or 'condition'} not met within {timeout:g} s (last: {last!r})")
        time.sleep(interval)
