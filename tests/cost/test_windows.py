"""Window strings: the grammar, hours per week/month, midnight crossing, and clear errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from spotdet.cost.windows import (HOURS_PER_MONTH, WindowError, hours_per_month, hours_per_week, parse_days,
                                  parse_window, parse_windows, windows_overlap)
from spotdet.errors import UsageError


def test_business_hours():
    w = parse_window("mon-fri 09:00-18:00")
    assert w.days == (0, 1, 2, 3, 4)
    assert (w.start_min, w.end_min) == (9 * 60, 18 * 60)
    assert w.hours_per_week == 45.0
    assert hours_per_month([w]) == pytest.approx(45.0 * 365 / 7 / 12)


@pytest.mark.parametrize("spec, days", [
    ("sat,sun", (5, 6)), ("weekends", (5, 6)), ("daily", tuple(range(7))), ("weekdays", (0, 1, 2, 3, 4)),
    ("fri-mon", (0, 4, 5, 6)), ("Monday,wed", (0, 2)), ("MON-WED,fri", (0, 1, 2, 4)),
])
def test_day_specs(spec, days):
    assert parse_days(spec) == days


def test_overnight_and_midnight_end():
    night = parse_window("fri 22:00-02:00")
    assert night.crosses_midnight and night.hours_per_week == 4.0
    assert night.contains(datetime(2024, 1, 20, 1, 30))  # Saturday 01:30 belongs to Friday's night
    assert not night.contains(datetime(2024, 1, 19, 21, 59))
    whole = parse_window("daily 00:00-24:00")
    assert whole.hours_per_week == 168.0
    assert hours_per_month([whole]) == pytest.approx(HOURS_PER_MONTH)
    assert parse_window("sat 12:00-24:00").hours_per_week == 12.0


def test_several_windows_union():
    ws = parse_windows(["mon-fri 09:00-18:00", "sat 10:00-14:00"])
    assert hours_per_week(ws) == 49.0 and not windows_overlap(ws)
    overlapping = parse_windows("mon-fri 09:00-18:00; mon 17:00-20:00")
    assert windows_overlap(overlapping)
    assert hours_per_week(overlapping) == 47.0  # 45 + the two hours after 18:00 on Monday


def test_contains():
    w = parse_window("mon-fri 09:00-18:00")
    assert w.contains(datetime(2024, 1, 15, 9, 0))  # a Monday
    assert not w.contains(datetime(2024, 1, 15, 18, 0))  # the end is exclusive
    assert not w.contains(datetime(2024, 1, 13, 12, 0))  # a Saturday


@pytest.mark.parametrize("text", [
    "", "   ", "mon-fri", "09:00-18:00", "mon-fry 09:00-18:00", "mon-fri 9-18", "mon-fri 25:00-26:00",
    "mon-fri 09:60-18:00", "mon-fri 09:00-09:00", "mon,,fri 09:00-18:00", "mon-fri 09:00-24:30", "every day 9-5",
])
def test_malformed_windows_are_typed_errors(text):
    with pytest.raises(WindowError) as info:
        parse_windows(text)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    assert str(info.value)
