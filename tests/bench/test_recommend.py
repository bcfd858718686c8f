"""``recommend`` on a bench result recorded from a real run of the six zoo models on this machine.

Limits are derived from the recorded figures (not hard-coded), so the tests hold for a re-recorded fixture.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from support.bench import FIXTURE, bench_row
from spotdet.bench.recommend import Limits, check, limits_against, memory_mb, recommend
from spotdet.bench.report import load_report
from spotdet.errors import UsageError


@pytest.fixture
def rows():
    report = load_report(FIXTURE)
    ok = [r for r in report.rows if r.ok]
    assert len(ok) >= 6 and all(r.map50_95 is not None for r in ok)
    return ok


def by_map(rows):
    return sorted(rows, key=lambda r: -r.map50_95)


def test_no_limits_picks_most_accurate(rows):
    rec = recommend(rows, Limits())
    assert rec.best is by_map(rows)[0]
    assert rec.runner_up is by_map(rows)[1]
    assert any("runner-up" in w for w in rec.why) and rec.rejected == []


def test_best_fit_under_fps_limit(rows):
    fastest_accurate = by_map(rows)[0]
    min_fps = fastest_accurate.images_per_s * 1.5  # the most accurate model is too slow
    rec = recommend(rows, Limits(min_fps=min_fps))
    fitting = [r for r in rows if r.images_per_s >= min_fps]
    assert rec.best is by_map(fitting)[0]
    assert fastest_accurate in [j.row for j in rec.rejected]
    assert "fps" in rec.binding
    assert any("images/s <" in w for w in rec.why)


def test_no_fit_names_the_closest(rows):
    top_fps = max(r.images_per_s for r in rows)
    rec = recommend(rows, Limits(min_fps=top_fps * 2))
    assert rec.best is None and rec.runner_up is None
    assert rec.closest.row.images_per_s == top_fps  # the fastest falls least short
    assert "closest" in rec.why[0] and len(rec.rejected) == len(rows)


def test_no_fit_with_two_limits_weighs_both(rows):
    # every row misses the mAP bar; the closest is the most accurate one that also meets memory
    best_map = by_map(rows)[0].map50_95
    rec = recommend(rows, Limits(min_map=best_map + 5))
    assert rec.best is None and rec.closest.row is by_map(rows)[0]


def test_memory_is_the_binding_limit(rows):
    top = by_map(rows)[0]
    cap_mb = memory_mb(top) - 1.0  # just below what the most accurate one needs
    rec = recommend(rows, Limits(memory_gb=cap_mb / 1024))
    fitting = [r for r in rows if memory_mb(r) <= cap_mb]
    assert fitting, "the recorded rows should differ in memory"
    assert rec.best is by_map(fitting)[0]
    assert rec.binding == ["memory"]
    rejected_top = next(j for j in rec.rejected if j.row is top)
    assert rejected_top.limits_missed == ["memory"] and "MB memory" in rejected_top.reasons[0]
    assert any("binding limit: memory" in w for w in rec.why)


def test_ties(rows):
    a = by_map(rows)[0]
    twin = replace(copy.copy(a), model="aaa-twin")  # same figures, earlier in name order
    rec = recommend([*rows, twin], Limits())
    assert rec.tie and rec.best is twin and rec.runner_up is a
    assert any(w.startswith("tie:") for w in rec.why)
    faster = replace(copy.copy(a), model="zzz-faster", images_per_s=a.images_per_s * 2)
    rec = recommend([*rows, faster], Limits())
    assert rec.best is faster and rec.tie and any("tied on mAP" in w and "faster" in w for w in rec.why)


def test_min_map_without_map_measured(rows):
    no_map = [replace(copy.copy(r), map50_95=None, map50=None) for r in rows]
    rec = recommend(no_map, Limits(min_map=10))
    assert rec.best is None and all("mAP not measured" in j.reasons[0] for j in rec.rejected)
    rec = recommend(no_map, Limits())
    assert rec.best.images_per_s == max(r.images_per_s for r in rows)  # without mAP: the fastest


def test_price_sets_cost(rows):
    rec = recommend([copy.copy(r) for r in rows], Limits(), price_per_hour=3.6)
    assert rec.best.usd_per_1000 == pytest.approx(1000 / rec.best.images_per_s * 0.001, rel=1e-3)


@pytest.mark.parametrize("kwargs", [dict(memory_gb=0), dict(min_fps=-1), dict(min_map=150)])
def test_bad_limits(kwargs):
    with pytest.raises(UsageError):
        Limits(**kwargs)


def test_nothing_measured():
    with pytest.raises(UsageError):
        recommend([], Limits())


def test_row_label():
    from spotdet.bench.recommend import row_label

    assert row_label(bench_row("m", 10.0, 30.0, batch=4)) == "m (fp32 on onnxruntime, 416x416, batch 4)"


def test_speed_preference_picks_the_fastest_row_that_fits(rows):
    fastest = min(rows, key=lambda r: r.latency_p50_ms)
    rec = recommend(rows, Limits(), prefer="speed")
    assert rec.best is fastest and rec.prefer == "speed"
    assert any(w.startswith("fastest per image") for w in rec.why)
    floor = sorted(r.map50_95 for r in rows)[len(rows) // 2]  # only the more accurate half fits
    rec = recommend(rows, Limits(min_map=floor), prefer="speed")
    fitting = [r for r in rows if r.map50_95 >= floor]
    assert rec.best is min(fitting, key=lambda r: r.latency_p50_ms)
    assert all("map" in j.limits_missed for j in rec.rejected)


def test_speed_ties_go_to_the_more_accurate_row():
    a, b = bench_row("a", 10.0, 30.0), bench_row("b", 10.0, 31.0)
    rec = recommend([a, b], Limits(), prefer="speed")
    assert rec.best is b and rec.tie and any("tied on speed" in w and "more accurate" in w for w in rec.why)


def test_latency_limit():
    slow, fast = bench_row("slow", 20.0, 35.0), bench_row("fast", 8.0, 30.0)
    rec = recommend([slow, fast], Limits(max_latency_ms=10.0))
    assert rec.best is fast and rec.binding == ["latency"]
    (rejection,) = rec.rejected
    assert rejection.row is slow and rejection.shortfall == pytest.approx(1.0) and "ms/image > 10.00" in rejection.reasons[0]


def test_limits_against_a_baseline_row():
    base = bench_row("base", 10.0, 32.46)
    limits = limits_against(base, max_map_drop=1.0, min_speedup=1.05)
    assert limits.min_map == 31.46 and limits.max_latency_ms == pytest.approx(10.0 / 1.05)
    assert check(bench_row("x", 9.5, 31.46), limits) is None  # exactly at the budget: within it
    assert check(base, limits).limits_missed == ["latency"]  # the baseline never replaces itself
    assert limits_against(bench_row("weak", 10.0, 0.5), max_map_drop=1.0).min_map is None  # any mAP is in budget
    with pytest.raises(UsageError):
        limits_against(base, max_map_drop=-1)


def test_unknown_preference():
    with pytest.raises(UsageError, match="prefer"):
        recommend([bench_row("a", 1.0, 1.0)], Limits(), prefer="cheapest")


# -- GPU memory (--vram-gb) and the runtime filter (--backend) ------------------------------------------------------
def on_gpu(rows):
    """The recorded rows with a GPU-memory figure each (no GPU bench is recorded here: the figure is made up,
    growing with the file size and the batch as NVML's does, so the rows differ in it)."""
    return [replace(copy.copy(r), gpu_mem_mb=round(300 + 40 * r.file_mb * r.batch, 1)) for r in rows]


def test_vram_limit_picks_the_best_row_that_fits_the_card(rows):
    rows = on_gpu(rows)
    top = by_map(rows)[0]
    cap_mb = top.gpu_mem_mb - 1.0
    rec = recommend(rows, Limits(vram_gb=cap_mb / 1024))
    fitting = [r for r in rows if r.gpu_mem_mb <= cap_mb]
    assert fitting and rec.best is by_map(fitting)[0]
    assert rec.binding == ["vram"] and any("GPU memory (--vram-gb)" in w for w in rec.why)
    rejected_top = next(j for j in rec.rejected if j.row is top)
    assert rejected_top.limits_missed == ["vram"] and "MB GPU memory" in rejected_top.reasons[0]


def test_vram_limit_rejects_rows_measured_without_a_gpu(rows):
    measured_on_gpu = on_gpu(by_map(rows)[-1:])  # only the least accurate row has a GPU figure
    rec = recommend([*measured_on_gpu, *rows[:-1]], Limits(vram_gb=64))
    assert rec.best is measured_on_gpu[0]
    assert all(j.reasons == ["GPU memory not measured (bench on a GPU)"] for j in rec.rejected)
    rec = recommend(rows, Limits(vram_gb=64))
    assert rec.best is None and rec.closest is not None


def test_backend_filter_keeps_one_runtime(rows):
    openvino = [replace(copy.copy(r), backend="openvino", map50_95=r.map50_95 - 1) for r in rows]
    rec = recommend([*rows, *openvino], Limits(), backend="openvino")
    assert rec.best is by_map(openvino)[0] and rec.considered == len(openvino)
    rec = recommend([*rows, *openvino], Limits(min_map=by_map(rows)[0].map50_95 - 0.5), backend="onnxruntime")
    assert rec.best is by_map(rows)[0]
    assert all(j.row.backend == "onnxruntime" for j in rec.rejected)  # a filter: other runtimes are not "rejected"
    with pytest.raises(UsageError, match="no measured bench rows on backend openvino"):
        recommend(rows, Limits(), backend="openvino")
    with pytest.raises(UsageError, match="backend must be one of"):
        recommend(rows, Limits(), backend="tensorrt")


def test_bad_vram_limit():
    with pytest.raises(UsageError, match="--vram-gb"):
        Limits(vram_gb=0)


def test_rows_from_two_machines_are_not_mixed_without_being_asked(rows):
    """Rows carry the fingerprint of the machine that measured them; speeds of two machines do not compare."""
    here = [replace(r, hardware="aaaaaaaaaaaa") for r in rows]
    there = [replace(r, hardware="bbbbbbbbbbbb", images_per_s=r.images_per_s * 10) for r in rows]
    with pytest.raises(UsageError, match=r"2 different machines \(aaaaaaaaaaaa \(\d+ rows\), bbbbbbbbbbbb"):
        recommend(here + there, Limits())
    only_here = recommend(here + there, Limits(), hardware="aaaaaaaaaaaa")
    assert only_here.best.hardware == "aaaaaaaaaaaa" and "measured on hardware aaaaaaaaaaaa" in only_here.why
    mixed = recommend(here + there, Limits(), mix_hardware=True)
    assert "(mixed on request)" in mixed.why[1]
    with pytest.raises(UsageError, match="no bench rows measured on hardware cccc"):
        recommend(here, Limits(), hardware="cccc")
    assert recommend(rows, Limits()).best is not None  # one machine (the fixture's rows carry no fingerprint)


def test_a_measured_row_carries_this_machines_fingerprint(photos):
    from spotdet import Detector
    from spotdet.bench.measure import measure
    from spotdet.hardware import fingerprint

    row = measure(Detector("fastestdet"), None, 1, [photos["chelsea"]], tolerance=0.5, max_seconds=0.3)
    assert row.ok and row.hardware == fingerprint()["id"]
