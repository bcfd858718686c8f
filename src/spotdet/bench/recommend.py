"""Pick one bench row under limits: the one picker behind ``spotdet recommend`` and ``spotdet optimize --auto``.

Every measured row (status ok, images/s measured) is checked against the limits (memory, GPU memory, images/s,
mAP, per-image p50 latency); ``backend`` first narrows the rows to one inference runtime. Among the rows that meet every limit, the best by the preference wins:

* ``prefer="accuracy"`` (``spotdet recommend``): the most accurate (mAP@0.5:0.95); equal mAP goes to the
  faster one (images/s), then the one using less memory, then name order. Rows without mAP rank below
  rows with it.
* ``prefer="speed"`` (``spotdet optimize --auto``): the lowest per-image p50 latency; equal latency goes to
  the more accurate one, then the one using less memory, then name order.

A full tie is reported as such. When nothing fits, the row with the smallest relative shortfall summed
over the limits it misses is named as the closest. ``limits_against`` turns "lose at most N mAP points and
be at least X times faster per image than this baseline row" into ordinary limits.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from spotdet.bench.report import BenchRow
from spotdet.cost.formula import cost_per_1000_images
from spotdet.errors import UsageError

PREFERENCES = ("accuracy", "speed")


@dataclass(frozen=True)
class Limits:
    memory_gb: float | None = None
    min_fps: float | None = None
    min_map: float | None = None
    max_latency_ms: float | None = None  # per-image p50
    #: GPU memory (NVML, the process's share with the model loaded at the row's batch): a row measured without a
    #: GPU has none, so it cannot show that it fits a card of this size and is rejected
    vram_gb: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("--memory-gb", self.memory_gb), ("--min-fps", self.min_fps), ("--min-map", self.min_map),
                            ("--max-latency-ms", self.max_latency_ms), ("--vram-gb", self.vram_gb)):
            if value is not None and (value != value or value <= 0):
                raise UsageError(f"{name} must be > 0, got {value}")
        if self.min_map is not None and self.min_map > 100:
            raise UsageError(f"--min-map is in points (0-100), got {self.min_map}")


def limits_against(baseline: BenchRow, max_map_drop: float, min_speedup: float = 1.0) -> Limits:
    """Limits a row must meet to replace ``baseline``: at most ``max_map_drop`` mAP points below it, and a
    per-image p50 at least ``min_speedup`` times lower than its. (The baseline itself misses the speed-up
    limit whenever ``min_speedup`` > 1: a caller keeps it when nothing fits.)"""
    if baseline.latency_p50_ms is None:
        raise UsageError(f"{row_label(baseline)} has no measured latency to compare against")
    if max_map_drop < 0 or min_speedup <= 0:
        raise UsageError(f"need max_map_drop >= 0 and min_speedup > 0, got {max_map_drop} and {min_speedup}")
    floor = None
    if baseline.map50_95 is not None:
        floor = round(baseline.map50_95 - max_map_drop, 6)  # mAPs are rounded to 0.01: no float-edge misses
        floor = floor if floor > 0 else None  # a budget larger than the baseline's mAP accepts any mAP
    return Limits(min_map=floor, max_latency_ms=baseline.latency_p50_ms / min_speedup)


@dataclass
class Rejection:
    row: BenchRow
    reasons: list[str]
    limits_missed: list[str]  # "memory" | "vram" | "fps" | "map" | "latency"
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
    prefer: str = "accuracy"


def memory_mb(row: BenchRow) -> float | None:
    """The memory a limit applies to: GPU memory on a GPU, otherwise the process peak RSS."""
    return row.gpu_mem_mb if row.gpu_mem_mb is not None else row.peak_rss_mb


def rank_key(row: BenchRow, prefer: str = "accuracy") -> tuple:
    """Sort key, best first: see the module docstring for the two preferences."""
    mem = memory_mb(row)
    mem = mem if mem is not None else math.inf
    has_map = 0 if row.map50_95 is not None else 1
    if prefer == "speed":
        latency = row.latency_p50_ms if row.latency_p50_ms is not None else math.inf
        return (latency, has_map, -(row.map50_95 or 0.0), mem, row.model, row.input, row.batch)
    return (has_map, -(row.map50_95 or 0.0), -(row.images_per_s or 0.0), mem, row.model, row.input, row.batch)


def row_label(row: BenchRow) -> str:
    """How a row is named in a recommendation: model (precision, input, batch)."""
    return f"{row.model} ({row.precision} on {row.backend}, {row.input}, batch {row.batch})"


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
    if limits.vram_gb is not None:
        cap = limits.vram_gb * 1024.0
        if row.gpu_mem_mb is None:
            reasons.append("GPU memory not measured (bench on a GPU)")
            missed.append("vram")
            short = math.inf
        elif row.gpu_mem_mb > cap:
            reasons.append(f"needs {row.gpu_mem_mb:.0f} MB > {cap:.0f} MB GPU memory")
            missed.append("vram")
            short += (row.gpu_mem_mb - cap) / cap
    if limits.min_fps is not None and row.images_per_s < limits.min_fps:
        reasons.append(f"{row.images_per_s:.1f} images/s < {limits.min_fps:g}")
        missed.append("fps")
        short += (limits.min_fps - row.images_per_s) / limits.min_fps
    if limits.max_latency_ms is not None and row.latency_p50_ms > limits.max_latency_ms:
        reasons.append(f"p50 {row.latency_p50_ms:.2f} ms/image > {limits.max_latency_ms:.2f}")
        missed.append("latency")
        short += (row.latency_p50_ms - limits.max_latency_ms) / limits.max_latency_ms
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


def on_backend(rows: list[BenchRow], backend: str | None) -> list[BenchRow]:
    """The rows measured on ``backend`` (an inference runtime); all rows for None."""
    if backend is None:
        return rows
    from spotdet.backends import BACKENDS

    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return [r for r in rows if r.backend == backend]


def on_hardware(rows: list[BenchRow], hardware: str | None = None, mix: bool = False) -> list[BenchRow]:
    """The rows of one machine: those of fingerprint ``hardware`` when given; else all rows, provided they were
    measured on one machine (or ``mix``: the caller compares machines knowingly). Speeds measured on different
    CPUs, GPUs or runtime versions do not compare, so mixing them is refused with the fingerprints found."""
    if hardware is not None:
        kept = [r for r in rows if r.hardware == hardware]
        if not kept:
            found = ", ".join(sorted({r.hardware or "unrecorded" for r in rows})) or "none"
            raise UsageError(f"no bench rows measured on hardware {hardware} (found: {found})")
        return kept
    counts = Counter(r.hardware or "unrecorded" for r in rows)
    if len(counts) > 1 and not mix:
        listed = ", ".join(f"{h} ({n} rows)" for h, n in sorted(counts.items()))
        raise UsageError(f"these bench rows were measured on {len(counts)} different machines ({listed}); speeds "
                         "do not compare across hardware. Choose one with --hardware ID, or compare them anyway "
                         "with --mix-hardware")
    return rows


def recommend(rows: list[BenchRow], limits: Limits, price_per_hour: float | None = None,
              prefer: str = "accuracy", backend: str | None = None, hardware: str | None = None,
              mix_hardware: bool = False) -> Recommendation:
    """The best measured row that meets ``limits`` (by ``prefer``), the runner-up, and why; ``backend`` keeps
    only the rows of that runtime (a filter, not a limit: other runtimes' rows are not reported as rejected);
    ``hardware``/``mix_hardware``: see ``on_hardware`` (rows of several machines are refused by default)."""
    if prefer not in PREFERENCES:
        raise UsageError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    rows = on_hardware(rows, hardware, mix_hardware)
    measured = [r for r in on_backend(rows, backend) if r.ok and r.images_per_s]
    if not measured:
        where = f" on backend {backend}" if backend else ""
        raise UsageError(f"no measured bench rows{where} to choose from (run `spotdet bench"
                         f"{' --backend ' + backend if backend else ''}` first)")
    if price_per_hour is not None:
        for r in measured:
            r.usd_per_1000 = round(cost_per_1000_images(price_per_hour, r.images_per_s), 6)

    def key(r: BenchRow) -> tuple:
        return rank_key(r, prefer)

    ranked = sorted(measured, key=key)
    fits: list[BenchRow] = []
    rejected: list[Rejection] = []
    for r in ranked:
        rej = check(r, limits)
        (rejected.append(rej) if rej else fits.append(r))
    rec = Recommendation(limits, None, None, [], rejected, considered=len(measured), prefer=prefer)
    if not fits:
        rec.closest = min(rejected, key=lambda j: (j.shortfall, key(j.row)))
        c = rec.closest
        rec.why.append(f"nothing meets the limits; closest: {row_label(c.row)} - {'; '.join(c.reasons)} "
                       f"({_figures(c.row)})")
        return rec
    best = fits[0]
    rec.best = best
    rec.runner_up = fits[1] if len(fits) > 1 else None
    rec.why.append(f"{row_label(best)}: {_figures(best)}")
    machines = sorted({r.hardware for r in measured if r.hardware})
    if machines:
        rec.why.append(f"measured on hardware {', '.join(machines)}" + (" (mixed on request)" if len(machines) > 1
                                                                          else ""))
    if prefer == "speed":
        rule = "fastest per image"
    else:
        rule = "most accurate" if best.map50_95 is not None else "fastest (no mAP measured)"
    rec.why.append(f"{rule} of the {len(fits)} combination(s) that meet the limits "
                   f"({len(rejected)} rejected)")
    up = rec.runner_up
    if up is not None:
        tie = _tie(best, up, prefer)
        if tie:
            rec.tie = True
            rec.why.append(tie)
        rec.why.append(f"runner-up: {row_label(up)}: {_figures(up)}")
    above = [j for j in rejected if key(j.row) < key(best)]
    binding = sorted({m for j in above for m in j.limits_missed})
    rec.binding = binding
    for j in above[:3]:
        rec.why.append(f"would rank higher but rejected: {row_label(j.row)} - {'; '.join(j.reasons)}")
    if binding:
        names = {"memory": "memory", "vram": "GPU memory (--vram-gb)", "fps": "speed (--min-fps)", "map": "accuracy (--min-map)",
                 "latency": "per-image latency"}
        rec.why.append("binding limit: " + ", ".join(names[b] for b in binding))
    return rec


def _tie(best: BenchRow, up: BenchRow, prefer: str) -> str | None:
    """What the runner-up ties with the best on, if anything (None when the preference alone decided)."""
    same_map = best.map50_95 == up.map50_95
    same_speed = (best.latency_p50_ms == up.latency_p50_ms if prefer == "speed"
                  else best.images_per_s == up.images_per_s)
    same_mem = memory_mb(best) == memory_mb(up)
    if same_map and same_speed and same_mem:
        return f"tie: {row_label(up)} has the same mAP, speed and memory; picked by name order"
    if prefer == "speed" and same_speed:
        what = "more accurate" if not same_map else "uses less memory"
        return f"tied on speed with {row_label(up)}; this one is {what}"
    if prefer == "accuracy" and same_map:
        what = "faster" if not same_speed else "uses less memory"
        return f"tied on mAP with {row_label(up)}; this one is {what}"
    return None
