"""The cost formula: what one inference, a thousand images and a month of a machine cost.

cost per inference = price_per_hour x inference_seconds / 3600 / concurrency      (busy cost)
reserved cost      = price_per_hour x uptime_seconds / 3600                        (what the bill says)

``concurrency`` is how many inferences the machine runs at the same time at that latency (streams,
replicas or the batch size of a batched run). A month is 730 hours (8760 / 12). Busy cost is what the work
would cost on a machine kept busy; a machine is paid for while it is up, so a mostly idle service costs its
reserved cost, and the difference (the idle share) is what scale-to-zero or a schedule can save.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from spotdet.cost.windows import HOURS_PER_MONTH, Window, hours_per_month
from spotdet.errors import UsageError

DAYS_PER_MONTH = 365.0 / 12.0


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    if value is None or value != value or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def cost_per_inference(price_per_hour: float, inference_seconds: float, concurrency: float = 1.0) -> float:
    """USD for one inference when the machine is kept busy."""
    _positive("price per hour", price_per_hour, allow_zero=True)
    _positive("inference time", inference_seconds)
    _positive("concurrency", concurrency)
    return price_per_hour * inference_seconds / 3600.0 / concurrency


def cost_per_1000_images(price_per_hour: float, images_per_s: float) -> float:
    """USD per 1,000 images at a measured throughput (a fully busy machine)."""
    _positive("images per second", images_per_s)
    return cost_per_inference(price_per_hour, 1.0 / images_per_s) * 1000.0


def reserved_cost(price_per_hour: float, uptime_seconds: float) -> float:
    """USD for holding the hardware ``uptime_seconds``, busy or idle: what the provider bills."""
    _positive("price per hour", price_per_hour, allow_zero=True)
    _positive("uptime", uptime_seconds, allow_zero=True)
    return price_per_hour * uptime_seconds / 3600.0


@dataclass
class CostSplit:
    """Busy cost beside reserved cost for one stretch of serving (a process's life, or replica-seconds)."""

    price_per_hour: float
    busy_s: float  # seconds the model ran batches
    uptime_s: float  # seconds the hardware was held
    busy_usd: float
    reserved_usd: float
    idle_share: float  # fraction of the reserved time not spent running batches (0 when nothing was up)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_split(price_per_hour: float, busy_seconds: float, uptime_seconds: float) -> CostSplit:
    """Busy and reserved cost of a run, and the idle share ``1 - busy / uptime``.

    Busy time can exceed uptime only through clock granularity (both are sampled); the share is kept in
    [0, 1] so that a short run does not report a negative idle time.
    """
    _positive("busy time", busy_seconds, allow_zero=True)
    reserved = reserved_cost(price_per_hour, uptime_seconds)
    idle = min(1.0, max(0.0, 1.0 - busy_seconds / uptime_seconds)) if uptime_seconds > 0 else 0.0
    return CostSplit(price_per_hour, busy_seconds, uptime_seconds, price_per_hour * busy_seconds / 3600.0,
                     reserved, idle)


@dataclass
class Plan:
    """One way to pay for the machine over a month."""

    name: str
    hours_per_month: float
    price_per_hour: float
    monthly_usd: float
    capacity_per_day: float | None = None  # inferences the plan's hours can serve per day
    usd_per_request: float | None = None  # when a daily request count is known
    fits: bool | None = None  # whether the requests fit in the plan's hours


@dataclass
class CostReport:
    latency_ms: float
    concurrency: float
    price_per_hour: float
    usd_per_inference: float
    usd_per_1000: float
    throughput_per_s: float
    requests_per_day: float | None
    busy_hours_per_day: float | None  # machine-hours of pure inference the requests need per day
    plans: list[Plan]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plan(name: str, hours: float, price: float, throughput: float, requests_per_day: float | None) -> Plan:
    monthly = hours * price
    capacity = throughput * 3600.0 * hours / DAYS_PER_MONTH
    plan = Plan(name, round(hours, 2), price, monthly, capacity_per_day=capacity)
    if requests_per_day:
        plan.usd_per_request = monthly / (requests_per_day * DAYS_PER_MONTH)
        plan.fits = requests_per_day <= capacity
    return plan


def cost_report(latency_ms: float, price_per_hour: float, concurrency: float = 1.0,
                requests_per_day: float | None = None, windows: list[Window] | None = None,
                spot_price_per_hour: float | None = None) -> CostReport:
    """Cost per inference and monthly cost of 24/7, the given windows, and spot (when a spot price is known)."""
    seconds = _positive("latency (ms)", latency_ms) / 1000.0
    per_inf = cost_per_inference(price_per_hour, seconds, concurrency)
    throughput = concurrency / seconds
    if requests_per_day is not None:
        _positive("requests per day", requests_per_day, allow_zero=True)
    plans = [_plan("24/7 on-demand", HOURS_PER_MONTH, price_per_hour, throughput, requests_per_day)]
    if windows:
        label = "windows on-demand (" + "; ".join(str(w) for w in windows) + ")"
        plans.append(_plan(label, hours_per_month(windows), price_per_hour, throughput, requests_per_day))
    if spot_price_per_hour is not None:
        _positive("spot price per hour", spot_price_per_hour, allow_zero=True)
        plans.append(_plan("24/7 spot", HOURS_PER_MONTH, spot_price_per_hour, throughput, requests_per_day))
        if windows:
            plans.append(_plan("windows spot", hours_per_month(windows), spot_price_per_hour, throughput,
                               requests_per_day))
    busy = requests_per_day * seconds / concurrency / 3600.0 if requests_per_day is not None else None
    return CostReport(latency_ms=latency_ms, concurrency=concurrency, price_per_hour=price_per_hour,
                      usd_per_inference=per_inf, usd_per_1000=per_inf * 1000.0, throughput_per_s=throughput,
                      requests_per_day=requests_per_day, busy_hours_per_day=busy, plans=plans)
