"""Window arithmetic (controlplane/windows.py): membership, the start of the occurrence that
contains a time, the next start, and overlap; across midnight and across the week's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from controlplane.windows import (
    format_daily,
    format_weekly,
    in_daily_window,
    in_weekly_window,
    next_window_start,
    overlap,
    parse,
    window_start,
)

# 2026-01-05 is a Monday.
MON = datetime(2026, 1, 5, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """`day` days after Monday 2026-01-05 (may be negative or past Sunday)."""
    return MON + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def test_daily_window_is_half_open() -> None:
    assert not in_daily_window("03:00-04:00", at(0, 2, 59, 59))
    assert in_daily_window("03:00-04:00", at(0, 3))
    assert in_daily_window("03:00-04:00", at(2, 3, 59, 59))
    assert not in_daily_window("03:00-04:00", at(0, 4))


def test_daily_window_crossing_midnight() -> None:
    window = "23:30-01:00"
    assert in_daily_window(window, at(0, 23, 45))
    assert in_daily_window(window, at(1, 0, 30))
    assert not in_daily_window(window, at(1, 1, 0))
    assert not in_daily_window(window, at(1, 23, 29, 59))
    assert window_start(window, at(1, 0, 30)) == at(0, 23, 30)
    assert window_start(window, at(0, 23, 45)) == at(0, 23, 30)
    assert window_start(window, at(1, 12)) is None


def test_weekly_window_crossing_the_week_end() -> None:
    window = "sun:23:00-mon:01:00"
    assert in_weekly_window(window, at(6, 23, 30))  # Sunday
    assert in_weekly_window(window, at(7, 0, 30))  # the next Monday
    assert in_weekly_window(window, at(0, 0, 59, 59))  # this Monday: last Sunday's occurrence
    assert not in_weekly_window(window, at(0, 1))
    assert not in_weekly_window(window, at(6, 22, 59))
    assert window_start(window, at(7, 0, 30)) == at(6, 23)
    assert window_start(window, at(0, 0, 30)) == at(-1, 23)
    assert window_start(window, at(3, 12)) is None


def test_weekly_window_wraps_as_before() -> None:
    assert in_weekly_window("sat:23:00-sun:01:00", datetime(2026, 1, 3, 23, 30, tzinfo=UTC))
    assert in_weekly_window("sat:23:00-sun:01:00", datetime(2026, 1, 4, 0, 30, tzinfo=UTC))
    assert not in_weekly_window("sat:23:00-sun:01:00", datetime(2026, 1, 4, 1, 0, tzinfo=UTC))
    assert in_weekly_window("SUN:23:30-MON:00:30", datetime(2026, 1, 4, 23, 45, tzinfo=UTC))


def test_window_start_of_a_multi_day_weekly_window() -> None:
    window = "fri:22:00-tue:02:00"
    assert window_start(window, at(0, 12)) == at(-3, 22)  # Monday noon: started last Friday
    assert window_start(window, at(1, 1, 59)) == at(-3, 22)
    assert window_start(window, at(1, 2)) is None
    assert window_start(window, at(4, 22)) == at(4, 22)


def test_next_window_start_is_strictly_after() -> None:
    assert next_window_start("03:00-04:00", at(0, 2, 59, 59)) == at(0, 3)
    assert next_window_start("03:00-04:00", at(0, 3)) == at(1, 3)
    assert next_window_start("03:00-04:00", at(0, 3, 0, 1)) == at(1, 3)
    assert next_window_start("23:30-01:00", at(0, 23, 45)) == at(1, 23, 30)
    assert next_window_start("wed:05:00-wed:06:00", at(0, 0)) == at(2, 5)
    assert next_window_start("wed:05:00-wed:06:00", at(2, 5)) == at(9, 5)
    assert next_window_start("sun:23:00-mon:01:00", at(6, 23, 0, 0)) == at(13, 23)
    assert next_window_start("sun:23:00-mon:01:00", at(6, 22, 59)) == at(6, 23)
    # Sub-second precision does not lose a start.
    assert next_window_start("03:00-04:00", at(0, 3) - timedelta(microseconds=1)) == at(0, 3)


def test_starts_step_through_a_week_in_order() -> None:
    t, starts = at(0, 0), []
    for _ in range(8):
        t = next_window_start("12:15-13:15", t)
        starts.append(t)
        assert window_start("12:15-13:15", t) == t
        assert window_start("12:15-13:15", t + timedelta(seconds=1)) == t
    assert starts == [at(day, 12, 15) for day in range(8)]


def test_other_time_zones_are_read_as_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    local = datetime(2026, 1, 5, 4, 30, tzinfo=berlin)  # 03:30 UTC
    assert in_daily_window("03:00-04:00", local)
    assert window_start("03:00-04:00", local) == at(0, 3)
    assert next_window_start("03:00-04:00", local) == at(1, 3)


def test_overlap() -> None:
    assert overlap("mon:03:00-mon:04:00", "03:30-04:30")
    assert overlap("mon:03:00-mon:04:00", "02:00-03:01")
    assert not overlap("mon:03:00-mon:04:00", "04:00-05:00")  # touching
    assert not overlap("mon:03:00-mon:04:00", "02:00-03:00")
    assert overlap("sun:23:30-mon:00:30", "00:00-01:00")  # across the week's end
    assert overlap("sun:23:30-mon:00:30", "23:00-23:45")
    assert overlap("wed:10:00-wed:11:00", "22:00-10:30")  # a daily window crossing midnight
    assert not overlap("wed:10:00-wed:11:00", "22:00-10:00")
    assert overlap("mon:00:00-wed:00:00", "12:00-13:00")
    assert overlap("03:00-04:00", "03:59-05:00") and not overlap("03:00-04:00", "04:00-05:00")


@pytest.mark.parametrize("text", ["", "03:00", "24:00-01:00", "mon:03:00-04:00", "xyz:01:00-xyz:02:00",
                                  "03:00-04:60", "mon:3:00-mon:04:00"])
def test_parse_refuses_what_is_not_a_window(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_in_weekly_and_daily_refuse_the_other_form() -> None:
    with pytest.raises(ValueError):
        in_weekly_window("03:00-04:00", at(0, 3))
    with pytest.raises(ValueError):
        in_daily_window("mon:03:00-mon:04:00", at(0, 3))


def test_formatting_round_trips() -> None:
    assert format_weekly(6 * 1440 + 23 * 60, 120) == "sun:23:00-mon:01:00"
    assert format_daily(23 * 60 + 30, 90) == "23:30-01:00"
    for text in ("sun:23:00-mon:01:00", "tue:04:15-tue:05:15"):
        w = parse(text)
        assert format_weekly(w.start, w.length) == text
