"""Advice from a utilization log: is the machine too small, too big, or idle most of the time?

Rules (thresholds are strict: exactly 80 % utilization is not "above 80 %", exactly 30 % of the time is
not "more than 30 %"):

* upgrade: utilization above 80 % for more than 30 % of the time -> consider a bigger GPU;
* mostly idle: utilization below 10 % for more than half of the time -> a smaller GPU, scale-to-zero,
  or running only in the hours that see work (a window);
* otherwise the machine is right-sized.

Each sample stands for the time until the next one, capped at 3x the median interval so that a gap
in the log (machine off, monitor stopped) does not count as a long stretch at the last value.

Scale-to-zero settings come from the idle stretches (consecutive idle samples): with an idle delay D
(``spotdet serve --ray --min-replicas 0 --idle-unload D``), every stretch longer than D runs without a
replica for its length minus D, and ends with one cold start. The suggested D is the shortest of
``IDLE_DELAYS_S`` with at most ``MAX_COLD_STARTS_PER_DAY`` cold starts a day: each costs one request a few
seconds, the saving is the hardware not held.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from spotdet.cost.formula import DAYS_PER_MONTH
from spotdet.cost.prices import Instance, PriceTable
from spotdet.cost.utilization import Sample, UtilizationLogError
from spotdet.cost.windows import HOURS_PER_MONTH, WEEKS_PER_MONTH

HIGH_UTIL_PCT = 80.0
HIGH_SHARE = 0.30
IDLE_UTIL_PCT = 10.0
IDLE_SHARE = 0.50
GAP_FACTOR = 3.0
ACTIVE_HOUR_SHARE = 0.2  # an hour of the day belongs to the suggested window when active >= 20% of it
IDLE_DELAYS_S = (60.0, 300.0, 900.0, 1800.0, 3600.0)  # idle delays (--idle-unload) weighed for scale-to-zero
MAX_COLD_STARTS_PER_DAY = 24.0  # about one an hour: the suggested delay keeps cold starts at or below this


@dataclass
class SeriesStats:
    source: str
    samples: int
    start: float
    end: float
    covered_hours: float
    mean_util_pct: float
    p95_util_pct: float
    share_above_80: float  # fraction of covered time with utilization > 80 %
    share_idle: float  # fraction of covered time with utilization < 10 %
    effective_hours_per_day: float  # utilization-weighted hours of full use per day
    active_hours_per_day: float  # hours per day with utilization >= 10 %
    peak_mem_pct: float | None
    active_share_by_hour: list[float] = field(default_factory=list)  # 24 values, local time
    active_share_by_weekday: list[float] = field(default_factory=list)  # 7 values, Monday first


@dataclass
class ScaleToZero:
    """What one idle delay would have done over the log: time without a replica, cold starts, money."""

    delay_s: float
    zero_share: float  # fraction of covered time with no replica held
    cold_starts_per_day: float
    monthly_saving_usd: float | None  # vs holding the hardware 24/7, at the given price


@dataclass
class Advice:
    stats: SeriesStats
    verdict: str  # "upgrade" | "idle" | "right-sized"
    messages: list[str]
    monthly_at_stake_usd: float | None = None
    suggested_window: str | None = None
    scale_to_zero: list[ScaleToZero] = field(default_factory=list)  # one per IDLE_DELAYS_S
    suggested_idle_delay_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weights(ts: list[float]) -> list[float]:
    if len(ts) == 1:
        return [1.0]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    positive = [g for g in gaps if g > 0]
    median = statistics.median(positive) if positive else 1.0
    cap = GAP_FACTOR * median
    return [min(max(g, 0.0), cap) for g in gaps] + [median]


def series_stats(samples: list[Sample]) -> SeriesStats:
    """Time-weighted statistics of one device's samples (sorted by time)."""
    if not samples:
        raise UtilizationLogError("the utilization log holds no samples")
    samples = sorted(samples, key=lambda s: s.ts)
    w = _weights([s.ts for s in samples])
    total = sum(w)
    util = [s.util_pct for s in samples]
    above = sum(wi for wi, u in zip(w, util) if u > HIGH_UTIL_PCT) / total
    idle = sum(wi for wi, u in zip(w, util) if u < IDLE_UTIL_PCT) / total
    mean = sum(wi * u for wi, u in zip(w, util)) / total
    by_hour_total, by_hour_active = [0.0] * 24, [0.0] * 24
    by_day_total, by_day_active = [0.0] * 7, [0.0] * 7
    for wi, s in zip(w, samples):
        when = datetime.fromtimestamp(s.ts)
        by_hour_total[when.hour] += wi
        by_day_total[when.weekday()] += wi
        if s.util_pct >= IDLE_UTIL_PCT:
            by_hour_active[when.hour] += wi
            by_day_active[when.weekday()] += wi
    mem = [s.mem_used_mb / s.mem_total_mb * 100 for s in samples if s.mem_used_mb is not None and s.mem_total_mb]
    ordered = sorted(util)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return SeriesStats(
        source=samples[0].source, samples=len(samples), start=samples[0].ts, end=samples[-1].ts,
        covered_hours=total / 3600.0, mean_util_pct=mean, p95_util_pct=p95, share_above_80=above,
        share_idle=idle, effective_hours_per_day=mean / 100.0 * 24.0, active_hours_per_day=(1 - idle) * 24.0,
        peak_mem_pct=max(mem) if mem else None,
        active_share_by_hour=[a / t if t else 0.0 for a, t in zip(by_hour_active, by_hour_total)],
        active_share_by_weekday=[a / t if t else 0.0 for a, t in zip(by_day_active, by_day_total)])


def idle_stretches(samples: list[Sample]) -> list[float]:
    """Seconds of each run of consecutive idle samples (utilization below 10 %), gap-capped like the stats."""
    samples = sorted(samples, key=lambda s: s.ts)
    stretches: list[float] = []
    run = 0.0
    for wi, s in zip(_weights([s.ts for s in samples]), samples):
        if s.util_pct < IDLE_UTIL_PCT:
            run += wi
        elif run:
            stretches.append(run)
            run = 0.0
    if run:
        stretches.append(run)
    return stretches


def scale_to_zero_options(stretches: list[float], covered_s: float,
                          price_per_hour: float | None) -> list[ScaleToZero]:
    """For each idle delay in ``IDLE_DELAYS_S``: the share of time with no replica, the cold starts a day,
    and the monthly saving against 24/7 (the reserved cost not paid)."""
    options = []
    for delay in IDLE_DELAYS_S:
        zero = sum(max(0.0, d - delay) for d in stretches) / covered_s if covered_s else 0.0
        starts = sum(1 for d in stretches if d > delay) * 86400.0 / covered_s if covered_s else 0.0
        saving = price_per_hour * zero * HOURS_PER_MONTH if price_per_hour is not None else None
        options.append(ScaleToZero(delay, zero, starts, saving))
    return options


def suggest_idle_delay(options: list[ScaleToZero]) -> ScaleToZero | None:
    """The shortest delay that saves anything with at most ``MAX_COLD_STARTS_PER_DAY`` cold starts a day."""
    fit = [o for o in options if o.zero_share > 0 and o.cold_starts_per_day <= MAX_COLD_STARTS_PER_DAY]
    return min(fit, key=lambda o: o.delay_s) if fit else None


def suggest_window(stats: SeriesStats) -> tuple[str, float] | None:
    """A window covering the hours that see work: (window text, hours per week).

    With at least a week of data, days without work are left out (``mon-fri 09:00-18:00``); with less,
    every day is assumed alike (``daily ...``).
    """
    from spotdet.cost.windows import DAY_NAMES

    active = [h for h, share in enumerate(stats.active_share_by_hour) if share >= ACTIVE_HOUR_SHARE]
    if not active or len(active) == 24:
        return None
    first, last = min(active), max(active) + 1
    hours = f"{first:02d}:00-{last:02d}:00"
    days = list(range(7))
    if stats.covered_hours >= 7 * 24 - 0.01:
        days = [d for d, share in enumerate(stats.active_share_by_weekday) if share > 0.01] or days
    if len(days) == 7:
        spec = "daily"
    elif days == list(range(days[0], days[-1] + 1)):
        spec = f"{DAY_NAMES[days[0]]}-{DAY_NAMES[days[-1]]}" if len(days) > 1 else DAY_NAMES[days[0]]
    else:
        spec = ",".join(DAY_NAMES[d] for d in days)
    return f"{spec} {hours}", (last - first) * len(days)


def advise(samples: list[Sample], price_per_hour: float | None = None, instance: Instance | None = None,
           prices: PriceTable | None = None) -> list[Advice]:
    """One Advice per device in ``samples``."""
    if not samples:
        raise UtilizationLogError("the utilization log holds no samples; record some with `spotdet monitor`")
    by_source: dict[str, list[Sample]] = {}
    for s in samples:
        by_source.setdefault(s.source, []).append(s)
    if instance is not None and price_per_hour is None:
        price_per_hour = instance.on_demand
    return [_with_scale_to_zero(_advise_one(series_stats(v), price_per_hour, instance, prices), v, price_per_hour)
            for _, v in sorted(by_source.items())]


def _with_scale_to_zero(advice: Advice, samples: list[Sample], price: float | None) -> Advice:
    """Add the scale-to-zero table, and the suggested setting when the machine is not saturated."""
    st = advice.stats
    advice.scale_to_zero = scale_to_zero_options(idle_stretches(samples), st.covered_hours * 3600.0, price)
    best = suggest_idle_delay(advice.scale_to_zero)
    if best is None or advice.verdict == "upgrade":
        return advice
    advice.suggested_idle_delay_s = best.delay_s
    money = (f", saving ${best.monthly_saving_usd:,.0f}/month against 24/7"
             if best.monthly_saving_usd is not None else "")
    advice.messages.append(
        f"scale-to-zero setting: `spotdet serve --ray --min-replicas 0 --idle-unload {best.delay_s:g}` would "
        f"have held no replica {best.zero_share:.1%} of the time with {best.cold_starts_per_day:.1f} cold starts "
        f"a day{money} (`--idle-unload` alone frees memory, not money: the process and its machine stay up).")
    if advice.suggested_window:
        advice.messages.append(f"warm window: keep a replica (or the machine) up in '{advice.suggested_window}' "
                               "with `spotdet schedule` and scale to zero outside it.")
    return advice


def _advise_one(st: SeriesStats, price: float | None, instance: Instance | None,
                prices: PriceTable | None) -> Advice:
    msgs: list[str] = []
    monthly = price * HOURS_PER_MONTH if price is not None else None
    if st.share_above_80 > HIGH_SHARE:
        bigger_what = "GPU" if st.source.startswith("gpu") else "machine (more CPU cores, or a GPU)"
        msgs.append(f"above {HIGH_UTIL_PCT:.0f}% utilization for {st.share_above_80:.1%} of the time "
                    f"(more than {HIGH_SHARE:.0%}): consider a bigger {bigger_what} or another replica; "
                    "requests queue when the device is saturated.")
        at_stake = None
        bigger = prices.bigger_than(instance) if (prices and instance) else None
        if bigger is not None:
            at_stake = (bigger.on_demand - instance.on_demand) * HOURS_PER_MONTH
            msgs.append(f"next size up in the price table: {bigger.name} ({bigger.gpu}, ${bigger.on_demand:g}/h): "
                        f"${at_stake:,.0f}/month more than {instance.name} 24/7.")
        elif monthly is not None:
            at_stake = monthly
            msgs.append(f"this machine costs ${monthly:,.0f}/month 24/7; a second one of the same size would "
                        f"cost as much again.")
        return Advice(st, "upgrade", msgs, at_stake)
    if st.share_idle > IDLE_SHARE:
        msgs.append(f"mostly idle: below {IDLE_UTIL_PCT:.0f}% utilization {st.share_idle:.1%} of the time; "
                    f"{st.active_hours_per_day:.1f} active hours a day. Consider a smaller "
                    f"{'GPU' if st.source.startswith('gpu') else 'machine'}, scale-to-zero, "
                    "or running only in a window.")
        at_stake = None
        window = suggest_window(st)
        if monthly is not None:
            zero = price * st.active_hours_per_day * DAYS_PER_MONTH
            at_stake = monthly - zero
            msgs.append(f"scale-to-zero (pay only the active hours): ${zero:,.0f}/month instead of "
                        f"${monthly:,.0f} 24/7, saving ${at_stake:,.0f}/month.")
            if window is not None:
                w_cost = price * window[1] * WEEKS_PER_MONTH
                msgs.append(f"window '{window[0]}' (where the work happened): ${w_cost:,.0f}/month, saving "
                            f"${monthly - w_cost:,.0f}/month (`spotdet schedule --window \"{window[0]}\"`).")
        smaller = prices.smaller_than(instance) if (prices and instance) else None
        if smaller is not None:
            saving = (instance.on_demand - smaller.on_demand) * HOURS_PER_MONTH
            msgs.append(f"next size down: {smaller.name} ({smaller.gpu}, ${smaller.on_demand:g}/h) saves "
                        f"${saving:,.0f}/month 24/7.")
        return Advice(st, "idle", msgs, at_stake, window[0] if window else None)
    msgs.append(f"right-sized: above {HIGH_UTIL_PCT:.0f}% for {st.share_above_80:.1%} of the time (limit "
                f"{HIGH_SHARE:.0%}), idle {st.share_idle:.1%} of the time (limit {IDLE_SHARE:.0%}).")
    if monthly is not None:
        msgs.append(f"the machine costs ${monthly:,.0f}/month 24/7 at ${price:g}/h.")
    return Advice(st, "right-sized", msgs, None)
