"""The cost formula against hand-computed figures.

A month is an average month: 365 / 12 = 30.4167 days = 730 hours. The figures below are written out by
hand rather than computed from ``DAYS_PER_MONTH``/``HOURS_PER_MONTH``, so a wrong constant (say a
30-day month) fails here instead of cancelling out.
"""

from __future__ import annotations

import pytest

from spotdet.cost.formula import (DAYS_PER_MONTH, cost_per_1000_images, cost_per_inference, cost_report, cost_split,
                                  reserved_cost)
from spotdet.cost.windows import HOURS_PER_MONTH, WEEKS_PER_MONTH, parse_windows
from spotdet.errors import UsageError


def test_month_is_an_average_month():
    assert DAYS_PER_MONTH == pytest.approx(30.4167, abs=1e-4)
    assert HOURS_PER_MONTH == pytest.approx(730.0)
    assert WEEKS_PER_MONTH == pytest.approx(4.3452, abs=1e-4)


def test_cost_per_inference_formula():
    # $3.60/h = $0.001/s; 100 ms -> $0.0001; two at a time -> $0.00005 each
    assert cost_per_inference(3.6, 0.1, 2) == pytest.approx(0.00005)
    assert cost_per_inference(3.6, 0.1) == pytest.approx(0.0001)
    assert cost_per_1000_images(3.6, 20.0) == pytest.approx(0.05)  # 50 s of a $0.001/s machine


def test_report_plans():
    rep = cost_report(latency_ms=50, price_per_hour=1.0, concurrency=2, requests_per_day=1_000_000,
                      windows=parse_windows("mon-fri 09:00-17:00"), spot_price_per_hour=0.4)
    assert rep.throughput_per_s == pytest.approx(40.0)
    assert rep.busy_hours_per_day == pytest.approx(1_000_000 * 0.05 / 2 / 3600)
    plans = {p.name.split(" (")[0]: p for p in rep.plans}
    assert set(plans) == {"24/7 on-demand", "windows on-demand", "24/7 spot", "windows spot"}
    assert plans["24/7 on-demand"].monthly_usd == pytest.approx(730.0)
    assert plans["24/7 spot"].monthly_usd == pytest.approx(292.0)
    window_hours = 40 * 365 / 7 / 12
    assert plans["windows on-demand"].monthly_usd == pytest.approx(window_hours)
    assert plans["windows spot"].monthly_usd == pytest.approx(window_hours * 0.4)
    # $730 a month spread over 1M requests a day for 30.4167 days
    assert plans["24/7 on-demand"].usd_per_request == pytest.approx(730.0 / 30_416_667, rel=1e-6)
    assert plans["24/7 spot"].usd_per_request == pytest.approx(292.0 / 30_416_667, rel=1e-6)
    # 40 inferences/s for 24 h = 3.456M a day; the 40 h/week window serves 40 x 3600 x 40 / 7 = 822,857 a day
    assert plans["24/7 on-demand"].capacity_per_day == pytest.approx(3_456_000)
    assert plans["windows on-demand"].capacity_per_day == pytest.approx(822_857, abs=1)
    assert plans["24/7 on-demand"].fits and not plans["windows on-demand"].fits


def test_without_windows_or_spot_only_24_7():
    rep = cost_report(latency_ms=10, price_per_hour=0.5)
    assert [p.name for p in rep.plans] == ["24/7 on-demand"]
    assert rep.requests_per_day is None and rep.plans[0].fits is None


@pytest.mark.parametrize("kwargs", [dict(latency_ms=0, price_per_hour=1), dict(latency_ms=-5, price_per_hour=1),
                                    dict(latency_ms=5, price_per_hour=-1), dict(latency_ms=5, price_per_hour=1,
                                                                                concurrency=0),
                                    dict(latency_ms=float("nan"), price_per_hour=1)])
def test_bad_numbers(kwargs):
    with pytest.raises(UsageError):
        cost_report(**kwargs)


def test_reserved_cost_counts_idle_time_and_the_idle_share():
    # $3.60/h = $0.001/s: an hour up with 6 minutes of work costs $3.60 reserved, $0.36 busy, 90 % idle
    split = cost_split(3.6, 360.0, 3600.0)
    assert split.reserved_usd == pytest.approx(3.6) == reserved_cost(3.6, 3600.0)
    assert split.busy_usd == pytest.approx(0.36)
    assert split.idle_share == pytest.approx(0.9)
    assert cost_split(3.6, 0.0, 0.0).idle_share == 0.0  # nothing up yet: no idle time either
    assert cost_split(3.6, 10.2, 10.0).idle_share == 0.0  # sampling jitter never makes it negative
    with pytest.raises(UsageError):
        reserved_cost(3.6, -1.0)
