"""Ending the IAM-authenticated connections of a HAProxy IAM front after 12 hours, as AWS does.

HAProxy has no lifetime limit for a TCP session (its timeouts are idle ones), so the engine
looks: `show sess` on the front's runtime socket lists its sessions with their age, and
`shutdown session <id>` ends one. Only the sessions a token opened are ended: the Lua step
(iam_login.lua) sends those to the backend `IAM_BACKEND`, whose name `show sess` prints.

A session's start is taken once, when it is first seen (the engine's clock minus the age HAProxy
reports), so the limit follows the engine's clock, which a test can move; a session id HAProxy
reuses for a new session shows a smaller age than before and starts again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["IAM_BACKEND", "IamSessionReaper", "Session", "parse_sessions"]

log = logging.getLogger(__name__)

IAM_BACKEND = "iam"
_LINE = re.compile(r"^(0x[0-9a-fA-F]+): .*?\bbe=(\S+) .*?\bage=(\S+)")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")


@dataclass(frozen=True)
class Session:
    id: str
    backend: str
    age: float  # seconds, as HAProxy rounds it


def _seconds(text: str) -> float | None:
    """HAProxy's human_time ("3s", "1m12s", "12h0m", "2d3h"), in seconds; None if unreadable."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return float(sum(int(n) * _UNIT[u] for n, u in parts))


def parse_sessions(text: str) -> list[Session]:
    """The sessions of a `show sess` answer (its own CLI session included; lines it cannot read
    are skipped)."""
    sessions = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        age = _seconds(match.group(3))
        if age is not None:
            sessions.append(Session(match.group(1), match.group(2), age))
    return sessions


class IamSessionReaper:
    """Ends one front's IAM sessions older than `max_age` (engine clock) at each `sweep()`.
    `command(text)`: one request on the front's runtime socket, its answer."""

    def __init__(self, command: Callable[[str], str], max_age: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._command = command
        self.max_age = max_age
        self._clock = clock
        self._seen: dict[str, tuple[float, float]] = {}  # id -> (start, last age reported)

    def sweep(self) -> list[str]:
        """End what is too old; the ids of the sessions ended."""
        now = self._clock()
        current: dict[str, tuple[float, float]] = {}
        ended = []
        for session in parse_sessions(self._command("show sess")):
            if session.backend != IAM_BACKEND:
                continue
            known = self._seen.get(session.id)
            start = known[0] if known is not None and session.age >= known[1] else now - session.age
            if now - start >= self.max_age:
                self._command(f"shutdown session {session.id}")
                log.info("IAM front: ending session %s after %.0f s (AWS's limit)", session.id, now - start)
                ended.append(session.id)
                continue
            current[session.id] = (start, session.age)
        self._seen = current
        return ended
