"""Windows: is it now inside a weekly maintenance window (ddd:hh24:mi-ddd:hh24:mi, UTC)?"""

from __future__ import annotations

from datetime import datetime

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
_WEEK = 7 * 1440


def _minute_of_week(day: str, hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return _DAYS.index(day) * 1440 + int(hours) * 60 + int(minutes)


def in_weekly_window(window: str, now: datetime) -> bool:
    start_s, end_s = window.lower().split("-")
    start_day, start_hm = start_s.split(":", 1)
    end_day, end_hm = end_s.split(":", 1)
    start = _minute_of_week(start_day, start_hm)
    end = _minute_of_week(end_day, end_hm)
    current = now.weekday() * 1440 + now.hour * 60 + now.minute
    return (current - start) % _WEEK < (end - start) % _WEEK
