"""The advice rules at their exact boundaries, and on generated multi-day traces."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from spotdet.cost.advise import advise, series_stats
from spotdet.cost.prices import load_prices
from spotdet.cost.utilization import Sample, UtilizationLogError

START = datetime(2024, 3, 4, 0, 0).timestamp()  # a Monday, local time


def trace(levels: list[float], step: float = 60.0, source: str = "gpu0") -> list[Sample]:
    return [Sample(START + i * step, source, u, 1000.0, 16000.0) for i, u in enumerate(levels)]


def share_trace(high: float, high_count: int, total: int = 100, rest: float = 50.0) -> list[Sample]:
    return trace([high] * high_count + [rest] * (total - high_count))


@pytest.mark.parametrize("util, verdict", [(79.9, "right-sized"), (80.0, "right-sized"), (80.1, "upgrade")])
def test_utilization_boundary(util, verdict):
    # 40 % of the time at ``util``: only strictly above 80 % counts
    (a,) = advise(share_trace(util, 40))
    assert a.verdict == verdict
    assert a.stats.share_above_80 == pytest.approx(0.4 if util > 80 else 0.0)


@pytest.mark.parametrize("count, verdict", [(29, "right-sized"), (30, "right-sized"), (31, "upgrade")])
def test_time_share_boundary(count, verdict):
    (a,) = advise(share_trace(95.0, count))
    assert a.stats.share_above_80 == pytest.approx(count / 100)
    assert a.verdict == verdict


@pytest.mark.parametrize("util, idle, verdict", [(9.9, True, "idle"), (10.0, False, "right-sized"),
                                                 (10.1, False, "right-sized")])
def test_idle_utilization_boundary(util, idle, verdict):
    # 60 % of the time at ``util``. Documented rule (README, docs/bench-and-cost.md): idle means strictly
    # below 10 % ("idle time (<10%)", "active hours/day (>=10%)"), so exactly 10 % is active, not idle.
    (a,) = advise(share_trace(util, 60, rest=40.0))
    assert a.verdict == verdict
    assert a.stats.share_idle == pytest.approx(0.6 if idle else 0.0)
    assert a.stats.active_hours_per_day == pytest.approx(24.0 * (0.4 if idle else 1.0))
    # the trace starts at midnight, one sample a minute: hour 0 is all at ``util``
    assert a.stats.active_share_by_hour[0] == (0.0 if idle else 1.0)


@pytest.mark.parametrize("idle_count, verdict", [(49, "right-sized"), (50, "right-sized"), (51, "idle")])
def test_idle_time_share_boundary(idle_count, verdict):
    # idle for more than half of the time (strict): exactly 50 % is still right-sized
    (a,) = advise(share_trace(2.0, idle_count, rest=40.0))
    assert a.stats.share_idle == pytest.approx(idle_count / 100)
    assert a.verdict == verdict


def business_days(days: int = 3, step_min: int = 1) -> list[Sample]:
    """Weekdays: ~65 % utilization 09:00-18:00, 2 % otherwise."""
    out = []
    t = datetime.fromtimestamp(START)
    end = t + timedelta(days=days)
    i = 0
    while t < end:
        busy = t.weekday() < 5 and 9 <= t.hour < 18
        util = (55.0 + (i * 37 % 21)) if busy else 2.0
        out.append(Sample(t.timestamp(), "gpu0", util, 3000.0 if busy else 500.0, 16384.0))
        t += timedelta(minutes=step_min)
        i += 1
    return out


def test_multi_day_idle_trace_suggests_window_and_money():
    (a,) = advise(business_days(), price_per_hour=1.0)
    st = a.stats
    assert a.verdict == "idle"
    assert st.covered_hours == pytest.approx(72.0, abs=0.02)
    assert st.active_hours_per_day == pytest.approx(9.0, abs=0.02)
    assert st.share_idle == pytest.approx(15 / 24, abs=0.001)
    assert a.suggested_window == "daily 09:00-18:00"
    # scale-to-zero pays 9 h a day instead of 730 h a month
    assert a.monthly_at_stake_usd == pytest.approx(730 - 9 * 365 / 12, abs=0.5)
    assert any("scale-to-zero" in m for m in a.messages)


def test_upgrade_names_the_next_instance():
    table = load_prices()
    t4 = table.get("aws-g4dn.xlarge")
    (a,) = advise(share_trace(97.0, 60), instance=t4, prices=table)
    bigger = table.bigger_than(t4)
    assert a.verdict == "upgrade"
    assert a.monthly_at_stake_usd == pytest.approx((bigger.on_demand - t4.on_demand) * 730)
    assert any(bigger.name in m for m in a.messages)


def test_gaps_do_not_count_as_time():
    hour = trace([90.0] * 60)
    later = [Sample(s.ts + 10 * 3600, s.source, 5.0) for s in trace([5.0] * 60)]
    st = series_stats(hour + later)
    assert st.covered_hours == pytest.approx(2.0, abs=0.05)
    assert st.share_above_80 == pytest.approx(0.5, abs=0.02)


def test_devices_are_advised_separately():
    samples = share_trace(95.0, 60) + [Sample(s.ts, "gpu1", 1.0) for s in share_trace(95.0, 60)]
    by = {a.stats.source: a.verdict for a in advise(samples)}
    assert by == {"gpu0": "upgrade", "gpu1": "idle"}


def test_empty_log():
    with pytest.raises(UtilizationLogError, match="no samples"):
        advise([])


def test_week_long_trace_leaves_out_idle_days():
    (a,) = advise(business_days(days=7), price_per_hour=1.0)
    assert a.suggested_window == "mon-fri 09:00-18:00"
    assert any("mon-fri 09:00-18:00" in m for m in a.messages)


def test_idle_stretches_give_scale_to_zero_settings():
    """Three days of business hours: one 15-hour idle night a day (the first starts at midnight and ends at
    09:00, the last runs to the end of the log). A 300 s delay reclaims nearly all of the idle time with
    about one cold start a day, and is the shortest delay at or below the cold-start limit."""
    from spotdet.cost.advise import idle_stretches

    samples = business_days()
    stretches = idle_stretches(samples)
    assert len(stretches) == 4 and sum(stretches) == pytest.approx(3 * 15 * 3600, rel=0.001)
    (a,) = advise(samples, price_per_hour=1.0)
    by_delay = {o.delay_s: o for o in a.scale_to_zero}
    covered = a.stats.covered_hours * 3600
    assert by_delay[300].zero_share == pytest.approx((sum(stretches) - 4 * 300) / covered, rel=1e-3)
    assert by_delay[300].cold_starts_per_day == pytest.approx(4 / 3, rel=1e-3)
    assert by_delay[300].monthly_saving_usd == pytest.approx(by_delay[300].zero_share * 730)
    assert by_delay[60].zero_share > by_delay[3600].zero_share  # a longer delay holds the replica longer
    assert a.suggested_idle_delay_s == 60  # few, long idle stretches: even the shortest delay is cheap
    assert any("--min-replicas 0 --idle-unload 60" in m for m in a.messages)


def test_many_short_idle_gaps_push_the_delay_up():
    """Idle 5 minutes, busy 1 minute, all day: a 60 s delay would cold-start 240 times a day; 300 s and up
    never reach zero (no stretch is longer), so no setting is suggested."""
    samples = trace(([2.0] * 5 + [60.0]) * 240)
    (a,) = advise(samples, price_per_hour=1.0)
    by_delay = {o.delay_s: o for o in a.scale_to_zero}
    assert by_delay[60].cold_starts_per_day == pytest.approx(240, rel=0.01)
    assert by_delay[300].zero_share == 0
    assert a.suggested_idle_delay_s is None
