"""Crontab lines for windows and the saving against 24/7."""

from __future__ import annotations

import pytest

from spotdet.cost.schedule import cron_days, make_schedule
from spotdet.cost.windows import WindowError, parse_windows


def test_business_hours_crontab():
    plan = make_schedule(parse_windows("mon-fri 09:00-18:00"), "start-it", "stop-it", price_per_hour=1.0)
    assert plan.lines == ["0 9 * * 1-5 start-it", "0 18 * * 1-5 stop-it"]
    assert plan.hours_per_month == pytest.approx(45 * 365 / 7 / 12)
    assert plan.monthly_saving_usd == pytest.approx(730 - 45 * 365 / 7 / 12)


def test_weekend_overnight_and_midnight():
    assert make_schedule(parse_windows("sat,sun 10:30-16:15"), "a", "b").lines == ["30 10 * * 0,6 a", "15 16 * * 0,6 b"]
    # a Friday night window stops on Saturday morning
    assert make_schedule(parse_windows("fri 22:00-02:00"), "a", "b").lines == ["0 22 * * 5 a", "0 2 * * 6 b"]
    # ending at 24:00 on Sunday stops at Monday 00:00
    assert make_schedule(parse_windows("sun 08:00-24:00"), "a", "b").lines == ["0 8 * * 0 a", "0 0 * * 1 b"]
    assert make_schedule(parse_windows("daily 08:00-20:00"), "a", "b").lines == ["0 8 * * * a", "0 20 * * * b"]


def test_cron_days():
    assert cron_days((0, 1, 2, 3, 4)) == "1-5"
    assert cron_days((0, 2, 4)) == "1,3,5"
    assert cron_days((0, 1, 3, 4, 5, 6)) == "0-2,4-6"
    assert cron_days(tuple(range(7))) == "*"


def test_no_price_no_money():
    plan = make_schedule(parse_windows("mon 09:00-10:00"), "a", "b")
    assert plan.monthly_usd is None and plan.monthly_saving_usd is None


@pytest.mark.parametrize("windows, start, stop", [
    ("mon-fri 09:00-18:00; mon 17:00-19:00", "a", "b"),  # overlap
    ("daily 00:00-24:00", "a", "b"),  # that is 24/7
    ("mon-fri 09:00-18:00", "", "b"),
    ("mon-fri 09:00-18:00", "a", "b\nrm -rf /"),
])
def test_refused(windows, start, stop):
    with pytest.raises(WindowError):
        make_schedule(parse_windows(windows), start, stop)
