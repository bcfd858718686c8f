"""``spotdet optimize MODEL --auto``: build every variant, measure each with ``spotdet bench``'s code, and pick
one with ``spotdet recommend``'s picker.

Building: fp32 with a dynamic batch, fp16, int8-dynamic, int8-static with 8- and with 16-bit activations,
each through ``optimize()``, and a dynamic-batch copy of each built file; all are measured on ONNX Runtime.
Where OpenVINO is installed, the fp32 file and its dynamic-batch copy are also measured on OpenVINO, at fp32
and (on CPUs with native bf16) compiled in bf16: no file is built for those, the runtime compiles them.
OpenVINO's own INT8 (NNCF) is not tried: on the depthwise backbones of the zoo it gave no speed-up and lost
11-25 mAP (issue 10's measurements), the same activation-outlier problem as the ONNX Runtime path.

Measuring: every variant goes through ``spotdet.bench.runner.run_bench`` - one fresh process per variant
(so its peak memory is that variant's alone), the same timing definition and timing images as
``spotdet bench MODEL --data DATA`` (preprocess + backend run + decode/NMS on the first 8 images of
``data``, per-image p50 = batch time / batch), batches 1, 2, 4 and 8 for dynamic-batch variants (batch 1
for the others), and mAP on ``data`` through bench's evaluate path. A variant's rows *are* bench's
``BenchRow``s, so ``spotdet bench FILE`` and the --auto table report the same p50 for the same file,
within run-to-run noise. There is no timer in this module.

No second timing pass. The old measurer timed a fixed 40 runs per variant with no check of its own and
therefore timed everything twice, keeping the faster p50. Bench already times in rounds until the median
of all timed batches stops moving (within 5 %, at least 20 batches after warm-up) and marks a row whose
median never settles (``stable`` False, shown in the table), so a burst of load inside one variant's turn
is absorbed or flagged; a load lasting through a whole turn could just as well hit a second pass; and
keeping the minimum of two passes would make --auto's figures systematically lower than ``spotdet bench``'s
for the same file.

Picking (``choose``): ``bench.recommend.recommend(..., prefer="speed")`` over every measured row of every
variant (a row is a variant at one batch size), under ``limits_against(fp32 batch-1 row, max_map_drop,
MIN_SPEEDUP)``: the fastest per image among the rows that lose at most ``max_map_drop`` mAP points against
the fp32 parent and are at least ``MIN_SPEEDUP`` times faster per image than its batch-1 p50. When no row
qualifies, the fp32 parent is kept.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from spotdet.atomic import atomic_write_text
from spotdet.bench.recommend import limits_against, recommend
from spotdet.bench.report import BenchRow
from spotdet.bench.runner import run_bench
from spotdet.errors import SpotdetError
from spotdet.hardware import describe
from spotdet.optimize.api import optimize, source_model, variant_name
from spotdet.optimize.errors import OptimizeError

AUTO_PRECISIONS = (("fp16", 8), ("int8-dynamic", 8), ("int8-static", 8), ("int8-static", 16))  # (precision, act bits)
AUTO_BATCHES = (1, 2, 4, 8)  # timed for dynamic-batch variants; the others run batch 1 only
MIN_SPEEDUP = 1.05
"""A variant replaces the fp32 parent only when its per-image p50 is at least 5 % lower than the parent's
batch-1 p50. Two bench runs of the same file on a shared CPU differ by a few percent (bench's own stop rule
accepts a 5 % move of the median), so a smaller lead is noise, and it is not worth trading the exact, portable
fp32 file for."""


@dataclass
class Variant:
    name: str
    precision: str
    dynamic_batch: bool
    model: str  # what Detector loads: the parent's name or a file path
    backend: str = "onnxruntime"  # the runtime it is measured on
    run_precision: str | None = None  # a runtime precision (bf16) the backend compiles the file at
    rows: list[BenchRow] = field(default_factory=list)  # bench's rows, one per batch size timed
    skipped: str | None = None  # why it was not built or not measured

    @property
    def measured(self) -> list[BenchRow]:
        return [r for r in self.rows if r.ok]

    def at_batch(self, batch: int) -> BenchRow | None:
        return next((r for r in self.measured if r.batch == batch), None)

    @property
    def best(self) -> BenchRow | None:
        """The measured row with the lowest per-image p50 (the smaller batch on a tie)."""
        return min(self.measured, key=lambda r: (r.latency_p50_ms, r.batch), default=None)

    def summary(self) -> dict[str, Any]:
        """The figures of the --auto table, all taken from bench's rows."""
        b1, best = self.at_batch(1), self.best
        if best is None:
            return {}
        return {"file_mb": best.file_mb, "peak_rss_mb": best.peak_rss_mb,
                "p50_ms_b1": b1.latency_p50_ms if b1 else None, "best_batch": best.batch,
                "p50_ms_best": best.latency_p50_ms, "map50_95": best.map50_95, "map50": best.map50,
                "stable": all(r.stable for r in self.measured)}


@dataclass
class AutoReport:
    parent: str
    data: str
    calib: str
    max_map_drop: float
    variants: list[Variant] = field(default_factory=list)
    chosen: str | None = None
    chosen_batch: int | None = None
    reason: str = ""
    why: list[str] = field(default_factory=list)  # the picker's own explanation
    machine: dict[str, Any] = field(default_factory=dict)
    timing_input: str = ""

    @property
    def baseline(self) -> Variant | None:
        """The fp32 parent as it is (static batch, ONNX Runtime): what every variant is compared with."""
        return next((v for v in self.variants if v.precision == "fp32" and not v.dynamic_batch
                     and v.backend == "onnxruntime"), None)

    def to_dict(self) -> dict:
        return {"parent": self.parent, "data": self.data, "calib": self.calib, "max_map_drop": self.max_map_drop,
                "min_speedup": MIN_SPEEDUP, "chosen": self.chosen, "chosen_batch": self.chosen_batch,
                "reason": self.reason, "why": self.why, "machine": self.machine, "timing_input": self.timing_input,
                "variants": [{"name": v.name, "precision": v.precision, "dynamic_batch": v.dynamic_batch,
                              "model": v.model, "backend": v.backend, "skipped": v.skipped, **v.summary(),
                              "rows": [asdict(r) for r in v.rows]} for v in self.variants]}


COLUMNS = ("variant", "file MB", "peak RSS MB", "p50 ms/img b1", "best batch", "p50 ms/img best", "speed vs fp32",
           "mAP", "ΔmAP", "status")


def table_rows(report: AutoReport) -> list[list[str]]:
    base = report.baseline.summary() if report.baseline else {}
    rows = []
    for v in report.variants:
        s = v.summary()
        if not s:
            why = v.skipped or "; ".join(r.note for r in v.rows) or "not measured"
            rows.append([v.name, "", "", "", "", "", "", "", "", f"skipped: {why}"])
            continue
        drop = (base["map50_95"] - s["map50_95"]) if base.get("map50_95") is not None and s["map50_95"] is not None \
            else None
        speed = base["p50_ms_b1"] / s["p50_ms_best"] if base.get("p50_ms_b1") else None
        status = "chosen" if v.name == report.chosen else ("over mAP budget" if drop is not None and
                                                           drop > report.max_map_drop else "")
        if not s["stable"]:
            status = f"{status}; timing not stable" if status else "timing not stable"
        rows.append([v.name, _fmt(s["file_mb"], ".2f"), _fmt(s["peak_rss_mb"], ".0f"), _fmt(s["p50_ms_b1"], ".1f"),
                     str(s["best_batch"]), _fmt(s["p50_ms_best"], ".1f"), f"{speed:.2f}x" if speed else "",
                     _fmt(s["map50_95"], ".2f"), f"{-drop:+.2f}" if drop is not None else "", status])
    return rows


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def to_markdown(report: AutoReport) -> str:
    lines = [f"# spotdet optimize --auto: {report.parent}", "",
             f"mAP@0.5:0.95 on `{report.data}`, calibration `{report.calib}`, max mAP drop {report.max_map_drop}.",
             f"Timed by `spotdet bench`'s code, one process per variant, on {report.timing_input}: p50 per image of "
             "preprocess + inference + NMS; peak RSS and file size (MiB) at the best batch.",
             "speed vs fp32 = fp32 p50 at batch 1 / this variant's per-image p50 at its best batch.",
             f"Measured on {describe(report.machine)}, hardware fingerprint {report.machine.get('fingerprint', '?')}: "
             "the speeds and the choice hold for this hardware.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    lines += ["", f"**Chosen: {report.chosen}** (batch {report.chosen_batch}) — {report.reason}", ""]
    return "\n".join(lines)


def run_auto(model: str, calib: Path, data: Path, max_map_drop: float = 1.0, out_dir: Path | None = None,
             calib_method: str = "minmax", calib_count: int = 100, limit: int | None = None,
             threads: int | None = None, family: str | None = None,
             on_step: Callable[[str], None] | None = None, tolerance: float = 0.05, max_seconds: float = 15.0,
             isolate: bool = True) -> AutoReport:
    """Build fp16 / int8-dynamic / int8-static (+ dynamic-batch versions), measure all, pick the fastest in budget.

    ``limit``: mAP on the first N images of ``data``; ``tolerance`` / ``max_seconds``: bench's stop rule per
    batch size; ``isolate=False`` measures in this process (tests only: peak memory then includes the rest).
    """
    from spotdet.models.locations import cache_dir

    card, src = source_model(model, family)
    if card.precision != "fp32":
        raise OptimizeError(f"--auto starts from an fp32 model; {card.name} is {card.precision}")
    out_dir = Path(out_dir) if out_dir else cache_dir()
    step = on_step or (lambda _msg: None)
    report = AutoReport(card.name, str(data), str(calib), max_map_drop)
    parent_model = str(src) if family else card.name
    report.variants.append(Variant(card.name, "fp32", False, parent_model))
    stem = Path(card.file).stem

    def build(prec: str, dyn: bool, source: str, bits: int = 8) -> Variant:
        fresh = source == parent_model  # else: batch an already built variant file as it is
        precision = None if not fresh or prec == "fp32" else prec
        name = variant_name(card.name, prec, dyn, bits)
        out = out_dir / f"{variant_name(stem, prec, dyn, bits)}.onnx"
        step(f"building {name}")
        try:
            res = optimize(source, precision, out=out, calib=calib, calib_method=calib_method,
                           calib_count=calib_count, dynamic_batch=dyn, family=family, progress=False,
                           activation_bits=bits if fresh else 8)
            return Variant(name, prec, dyn, str(res.path))
        except SpotdetError as exc:
            return Variant(name, prec, dyn, "", skipped=str(exc))

    fp32_batched = build("fp32", True, parent_model)
    report.variants.append(fp32_batched)
    for precision, bits in AUTO_PRECISIONS:
        v = build(precision, False, parent_model, bits)
        report.variants.append(v)
        if v.skipped is None:  # batch the built file itself: no second calibration, same weights
            report.variants.append(build(precision, True, v.model, bits))
    report.variants.extend(openvino_variants(report.variants[0], fp32_batched))

    measure_variants(report, data, limit=limit, threads=threads,
                     family_of=lambda v: family if v.model == parent_model else None, step=step,
                     tolerance=tolerance, max_seconds=max_seconds, isolate=isolate)
    choose(report)
    return report


def openvino_variants(fp32: Variant, fp32_batched: Variant) -> list[Variant]:
    """The fp32 files again on OpenVINO, at fp32 and bf16, when OpenVINO is installed (else none).

    bf16 is skipped with the reason on a CPU without native bf16, instead of being measured emulated.
    """
    from spotdet.backends.openvino import openvino_available

    if not openvino_available():
        return []
    bf16_refusal = _bf16_refusal()
    out = []
    for source in (fp32, fp32_batched):
        if source.skipped:
            continue
        for precision in ("fp32", "bf16"):
            name = variant_name(source.name, precision, False) + " on openvino"
            out.append(Variant(name, precision, source.dynamic_batch, source.model, backend="openvino",
                               run_precision=precision if precision == "bf16" else None,
                               skipped=bf16_refusal if precision == "bf16" else None))
    return out


def _bf16_refusal() -> str | None:
    import openvino as ov

    from spotdet.backends.openvino import OV_DEVICE, check_bf16
    from spotdet.errors import UsageError

    try:
        check_bf16(ov.Core().get_property(OV_DEVICE, "OPTIMIZATION_CAPABILITIES"))
    except UsageError as exc:
        return str(exc)
    return None


def measure_variants(report: AutoReport, data: Path, limit: int | None = None, threads: int | None = None,
                     family_of: Callable[[Variant], str | None] = lambda _v: None,
                     step: Callable[[str], None] = lambda _msg: None, tolerance: float = 0.05,
                     max_seconds: float = 15.0, isolate: bool = True) -> None:
    """Fill every built variant's ``rows`` with ``spotdet bench``'s rows for it (``run_bench``, unchanged)."""
    for v in report.variants:
        if v.skipped:
            continue
        step(f"measuring {v.name}")
        batches = list(AUTO_BATCHES) if v.dynamic_batch else [1]
        try:
            bench = run_bench([v.model], batch=batches, threads=threads, data=data, map_limit=limit,
                              tolerance=tolerance, max_seconds=max_seconds, isolate=isolate, family=family_of(v),
                              backend=v.backend, precision=v.run_precision)
        except SpotdetError as exc:
            v.skipped = f"measuring failed: {exc}"
            continue
        report.machine, report.timing_input = bench.machine, bench.timing_input
        v.rows = bench.rows
        if not v.measured:
            v.skipped = "measuring failed: " + "; ".join(f"{r.status}: {r.note}" for r in v.rows)


def choose(report: AutoReport) -> None:
    """Pick the variant (and batch) with ``spotdet recommend``'s picker; see the module docstring.

    The limits are relative to the fp32 parent's batch-1 row: mAP drop <= ``max_map_drop`` and per-image p50
    at least ``MIN_SPEEDUP`` times lower (why 5 %: see ``MIN_SPEEDUP``). The parent itself never meets the
    speed-up limit; it is kept when no row does.
    """
    base = report.baseline
    b1 = base.at_batch(1) if base else None
    if base is None or b1 is None or b1.map50_95 is None:
        if base is None or b1 is None:
            why = (base.skipped if base else None) or "no batch-1 timing"
        else:
            why = "no mAP: " + (b1.note or "evaluation did not run")
        raise OptimizeError(f"the fp32 parent could not be measured ({why}); nothing to compare against")
    owner = {id(r): v for v in report.variants for r in v.measured}
    rows = [r for v in report.variants for r in v.measured]
    rec = recommend(rows, limits_against(b1, report.max_map_drop, MIN_SPEEDUP), prefer="speed")
    report.why = rec.why
    over = list(dict.fromkeys(owner[id(j.row)].name for j in rec.rejected if "map" in j.limits_missed))
    over_text = f"; over the mAP budget: {', '.join(over)}" if over else ""
    if rec.best is None:
        report.chosen, report.chosen_batch = base.name, 1
        report.reason = (f"kept fp32: no variant within the mAP budget is at least {MIN_SPEEDUP - 1:.0%} faster "
                         f"per image than fp32 ({b1.latency_p50_ms:.1f} ms){over_text}")
        return
    best = rec.best
    report.chosen, report.chosen_batch = owner[id(best)].name, best.batch
    drop = b1.map50_95 - best.map50_95
    report.reason = (f"fastest per image ({best.latency_p50_ms:.1f} ms at batch {best.batch}, >= "
                     f"{MIN_SPEEDUP - 1:.0%} faster than fp32's {b1.latency_p50_ms:.1f} ms) with mAP drop "
                     f"{drop:+.2f} <= {report.max_map_drop}" + over_text)
    chosen = owner[id(best)]
    if chosen.backend != "onnxruntime":
        how = f"--backend {chosen.backend}" + (f" --precision {chosen.run_precision}" if chosen.run_precision else "")
        report.reason += f"; it runs the {'batched ' if chosen.dynamic_batch else ''}fp32 file with {how}"


def write_reports(report: AutoReport, folder: Path) -> tuple[Path, Path]:
    base = Path(folder) / f"optimize-auto-{report.parent}"
    js, md = base.with_suffix(".json"), base.with_suffix(".md")
    atomic_write_text(js, json.dumps(report.to_dict(), indent=2))
    atomic_write_text(md, to_markdown(report))
    return js, md
