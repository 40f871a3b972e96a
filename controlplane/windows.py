"""Window arithmetic, pure and in UTC: weekly maintenance windows (`ddd:hh24:mi-ddd:hh24:mi`) and
daily snapshot windows (`hh24:mi-hh24:mi`). Here, below both the service layer (overlap checks,
defaults) and the reconciler (is it time?), so the two agree on what a window means.

A window is the half-open interval [start, end): 03:00-04:00 contains 03:59:59, not 04:00. An end
before the start crosses midnight (daily) or the week's end (weekly)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# datetime.weekday() order: minute 0 of a week is Monday 00:00.
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 1440
WEEK = 7 * DAY
_WEEKLY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):([0-5]\d)-"
                     r"(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):([0-5]\d)$")
_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    """A recurring interval: it starts `start` minutes into each period and lasts `length` minutes."""

    period: int  # DAY or WEEK, in minutes
    start: int
    length: int

    def occurrences(self) -> list[tuple[int, int]]:
        """Its [start, end) intervals in minutes of one week (a daily window occurs seven times)."""
        return [(first, first + self.length) for first in range(self.start, WEEK, self.period)]


def parse(window: str) -> Window:
    """A weekly or daily window; ValueError when it is neither."""
    text = window.lower()
    weekly = _WEEKLY.match(text)
    if weekly:
        start = DAYS.index(weekly[1]) * DAY + int(weekly[2]) * 60 + int(weekly[3])
        end = DAYS.index(weekly[4]) * DAY + int(weekly[5]) * 60 + int(weekly[6])
        return Window(WEEK, start, (end - start) % WEEK)
    daily = _DAILY.match(text)
    if daily:
        start = int(daily[1]) * 60 + int(daily[2])
        end = int(daily[3]) * 60 + int(daily[4])
        return Window(DAY, start, (end - start) % DAY)
    raise ValueError(f"not a window (ddd:hh24:mi-ddd:hh24:mi or hh24:mi-hh24:mi): {window!r}")


def format_weekly(start: int, length: int) -> str:
    """`ddd:hh24:mi-ddd:hh24:mi` for a window `start` minutes into the week (wrapped)."""
    return f"{_weekly_point(start)}-{_weekly_point(start + length)}"


def format_daily(start: int, length: int) -> str:
    end = (start + length) % DAY
    return f"{start % DAY // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def _weekly_point(minute: int) -> str:
    minute %= WEEK
    return f"{DAYS[minute // DAY]}:{minute % DAY // 60:02d}:{minute % 60:02d}"


def _period_base(w: Window, now: datetime) -> tuple[datetime, timedelta]:
    """The start of the period (day or week) `now` is in, and how far into it `now` is."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    base = midnight - timedelta(days=now.weekday()) if w.period == WEEK else midnight
    return base, now - base


def _utc(now: datetime) -> datetime:
    return now.astimezone(UTC) if now.tzinfo is not None else now


def window_start(window: str, now: datetime) -> datetime | None:
    """The start of the occurrence of `window` that contains `now`; None when `now` is outside it."""
    w = parse(window)
    now = _utc(now)
    _, into = _period_base(w, now)
    since_start = (into - timedelta(minutes=w.start)) % timedelta(minutes=w.period)
    if since_start >= timedelta(minutes=w.length):
        return None
    return now - since_start


def next_window_start(window: str, after: datetime) -> datetime:
    """The first start of `window` strictly after `after`."""
    w = parse(window)
    after = _utc(after)
    _, into = _period_base(w, after)
    until = (timedelta(minutes=w.start) - into) % timedelta(minutes=w.period)
    return after + (until or timedelta(minutes=w.period))


def in_window(window: str, now: datetime) -> bool:
    return window_start(window, now) is not None


def in_weekly_window(window: str, now: datetime) -> bool:
    """Whether `now` is inside a weekly maintenance window."""
    if parse(window).period != WEEK:
        raise ValueError(f"not a weekly window: {window!r}")
    return in_window(window, now)


def in_daily_window(window: str, now: datetime) -> bool:
    """Whether `now` is inside a daily snapshot window."""
    if parse(window).period != DAY:
        raise ValueError(f"not a daily window: {window!r}")
    return in_window(window, now)


def overlap(first: str, second: str) -> bool:
    """Whether two windows (either form) share a minute; touching ends do not count."""
    a, b = parse(first), parse(second)
    return any(_arcs_meet(s1, e1 - s1, s2, e2 - s2) for s1, e1 in a.occurrences() for s2, e2 in b.occurrences())


def _arcs_meet(s1: int, len1: int, s2: int, len2: int) -> bool:
    """Two intervals on the week's circle intersect: one starts inside the other."""
    return (len1 > 0 and (s2 - s1) % WEEK < len1) or (len2 > 0 and (s1 - s2) % WEEK < len2)
