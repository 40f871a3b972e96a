"""Windows: is it now inside a weekly maintenance window (ddd:hh24:mi-ddd:hh24:mi, UTC)?"""

from __future__ import annotations

from datetime import datetime, timedelta

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


def window_start(window: str, now: datetime) -> datetime | None:
    """The start of the occurrence of a daily window (hh24:mi-hh24:mi, UTC) holding `now`, or None."""
    start_s, end_s = window.split("-")
    sh, sm = (int(x) for x in start_s.split(":"))
    eh, em = (int(x) for x in end_s.split(":"))
    start, end = sh * 60 + sm, eh * 60 + em
    current = now.hour * 60 + now.minute
    if (current - start) % 1440 >= (end - start) % 1440:
        return None
    began = now.replace(hour=sh, minute=sm, second=0, microsecond=0)
    return began if began <= now else began - timedelta(days=1)
