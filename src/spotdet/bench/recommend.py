"""Pick model + precision + input size + batch from bench results under memory/speed/accuracy limits.

Among the measured rows that meet every limit, the most accurate wins (mAP@0.5:0.95); equal mAP goes
to the faster one, then the one using less memory, then name order (a full tie is reported as such).
Rows without mAP rank below rows with it. When nothing fits, the row with the smallest relative
shortfall summed over the limits it misses is named as the closest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spotdet.bench.runner import BenchRow
from spotdet.cost.formula import cost_per_1000_images
from spotdet.errors import UsageError


@dataclass(frozen=True)
class Limits:
    memory_gb: float | None = None
    min_fps: float | None = None
    min_map: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("--memory-gb", self.memory_gb), ("--min-fps", self.min_fps), ("--min-map", self.min_map)):
            if value is not None and (value != value or value <= 0):
                raise UsageError(f"{name} must be > 0, got {value}")
        if self.min_map is not None and self.min_map > 100:
            raise UsageError(f"--min-map is in points (0-100), got {self.min_map}")


@dataclass
class Rejection:
    row: BenchRow
    reasons: list[str]
    limits_missed: list[str]  # "memory" | "fps" | "map"
    shortfall: float  # sum of relative shortfalls; inf when a needed figure was not measured


@dataclass
class Recommendation:
    limits: Limits
    best: BenchRow | None
    runner_up: BenchRow | None
    why: list[str]
    rejected: list[Rejection] = field(default_factory=list)
    closest: Rejection | None = None
    tie: bool = False
    binding: list[str] = field(default_factory=list)  # limits that rejected rows ranking above the best
    considered: int = 0


def memory_mb(row: BenchRow) -> float | None:
    """The memory a limit applies to: GPU memory on a GPU, otherwise the process peak RSS."""
    return row.gpu_mem_mb if row.gpu_mem_mb is not None else row.peak_rss_mb


def rank_key(row: BenchRow) -> tuple:
    mem = memory_mb(row)
    return (0 if row.map50_95 is not None else 1, -(row.map50_95 or 0.0), -(row.images_per_s or 0.0),
            mem if mem is not None else math.inf, row.model, row.input, row.batch)


def describe(row: BenchRow) -> str:
    return f"{row.model} ({row.precision}, {row.input}, batch {row.batch})"


def _figures(row: BenchRow) -> str:
    mem = memory_mb(row)
    parts = [f"mAP {row.map50_95:.1f}" if row.map50_95 is not None else "mAP not measured",
             f"{row.images_per_s:.1f} images/s", f"p50 {row.latency_p50_ms:.1f} ms",
             f"{mem:.0f} MB" if mem is not None else "memory not measured"]
    if row.usd_per_1000 is not None:
        parts.append(f"${row.usd_per_1000:.4f} per 1,000 images")
    return ", ".join(parts)


def check(row: BenchRow, limits: Limits) -> Rejection | None:
    """None when ``row`` meets every limit, else what it misses and by how much."""
    reasons, missed, short = [], [], 0.0
    mem = memory_mb(row)
    if limits.memory_gb is not None:
        cap = limits.memory_gb * 1024.0
        if mem is None:
            reasons.append("memory not measured")
            missed.append("memory")
            short = math.inf
        elif mem > cap:
            reasons.append(f"needs {mem:.0f} MB > {cap:.0f} MB memory")
            missed.append("memory")
            short += (mem - cap) / cap
    if limits.min_fps is not None and row.images_per_s < limits.min_fps:
        reasons.append(f"{row.images_per_s:.1f} images/s < {limits.min_fps:g}")
        missed.append("fps")
        short += (limits.min_fps - row.images_per_s) / limits.min_fps
    if limits.min_map is not None:
        if row.map50_95 is None:
            reasons.append("mAP not measured (bench with --data)")
            missed.append("map")
            short = math.inf
        elif row.map50_95 < limits.min_map:
            reasons.append(f"mAP {row.map50_95:.1f} < {limits.min_map:g}")
            missed.append("map")
            short += (limits.min_map - row.map50_95) / limits.min_map
    return Rejection(row, reasons, missed, short) if reasons else None


def recommend(rows: list[BenchRow], limits: Limits, price_per_hour: float | None = None) -> Recommendation:
    measured = [r for r in rows if r.ok and r.images_per_s]
    if not measured:
        raise UsageError("no measured bench rows to choose from (run `spotdet bench` first)")
    if price_per_hour is not None:
        for r in measured:
            r.usd_per_1000 = round(cost_per_1000_images(price_per_hour, r.images_per_s), 6)
    ranked = sorted(measured, key=rank_key)
    fits: list[BenchRow] = []
    rejected: list[Rejection] = []
    for r in ranked:
        rej = check(r, limits)
        (rejected.append(rej) if rej else fits.append(r))
    rec = Recommendation(limits, None, None, [], rejected, considered=len(measured))
    if not fits:
        rec.closest = min(rejected, key=lambda j: (j.shortfall, rank_key(j.row)))
        c = rec.closest
        rec.why.append(f"nothing meets the limits; closest: {describe(c.row)} - {'; '.join(c.reasons)} "
                       f"({_figures(c.row)})")
        return rec
    best = fits[0]
    rec.best = best
    rec.runner_up = fits[1] if len(fits) > 1 else None
    rec.why.append(f"{describe(best)}: {_figures(best)}")
    rule = "most accurate" if best.map50_95 is not None else "fastest (no mAP measured)"
    rec.why.append(f"{rule} of the {len(fits)} combination(s) that meet the limits "
                   f"({len(rejected)} rejected)")
    up = rec.runner_up
    if up is not None:
        if best.map50_95 == up.map50_95 and best.images_per_s == up.images_per_s and memory_mb(best) == memory_mb(up):
            rec.tie = True
            rec.why.append(f"tie: {describe(up)} has the same mAP, speed and memory; picked by name order")
        elif best.map50_95 == up.map50_95:
            rec.tie = True
            what = "faster" if best.images_per_s != up.images_per_s else "uses less memory"
            rec.why.append(f"tied on mAP with {describe(up)}; this one is {what}")
        rec.why.append(f"runner-up: {describe(up)}: {_figures(up)}")
    above = [j for j in rejected if rank_key(j.row) < rank_key(best)]
    binding = sorted({m for j in above for m in j.limits_missed})
    rec.binding = binding
    for j in above[:3]:
        rec.why.append(f"would rank higher but rejected: {describe(j.row)} - {'; '.join(j.reasons)}")
    if binding:
        names = {"memory": "memory", "fps": "speed (--min-fps)", "map": "accuracy (--min-map)"}
        rec.why.append("binding limit: " + ", ".join(names[b] for b in binding))
    return rec
