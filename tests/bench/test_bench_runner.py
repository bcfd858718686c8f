"""The bench runner on real models and real COCO images: measured rows, skipped combinations, cache."""

from __future__ import annotations

import json

import pytest

from support.bench import make_dynamic_batch_yolox
from support.paths import VAL_DIR
from spotdet.bench.runner import (BenchRow, cache_path, load_cached, load_report, parse_sizes, run_bench,
                                  save_cached, timing_images)
from spotdet.cost.formula import cost_per_1000_images
from spotdet.errors import ModelNotFoundError, UsageError

QUICK = dict(max_seconds=1.0, tolerance=0.2)


def test_native_size_row_with_cost_and_map():
    report = run_bench(["fastestdet"], data=VAL_DIR, map_limit=5, price_per_hour=0.5, isolate=False, **QUICK)
    (row,) = report.rows
    assert row.ok and row.input == "352x352" and row.precision == "fp32" and row.device == "CPUExecutionProvider"
    assert 0 < row.latency_p50_ms <= row.latency_p95_ms
    assert row.batches_timed >= 20
    assert row.images_per_s > 0
    assert row.usd_per_1000 == pytest.approx(cost_per_1000_images(0.5, row.images_per_s), rel=1e-3)
    assert row.peak_rss_mb > 50 and row.model_rss_mb is not None
    assert row.file_mb == pytest.approx((VAL_DIR.parent.parent / "models" / "fastestdet.onnx").stat().st_size / 2**20,
                                        abs=0.01)
    assert 0 < row.map50_95 < row.map50 <= 100 and "first 5 images" in row.map_data
    assert report.machine["logical_cpus"] >= 1 and "images from" in report.timing_input


def test_impossible_combinations_are_skipped_with_a_note():
    report = run_bench(["fastestdet"], imgsz=[320, 352], batch=[1, 4], isolate=False, **QUICK)
    rows = {(r.input, r.batch): r for r in report.rows}
    assert len(report.rows) == 4
    assert rows[("352x352", 1)].ok
    assert rows[("320x320", 1)].status == "skipped" and "fixed input of 352x352" in rows[("320x320", 1)].note
    assert rows[("352x352", 4)].status == "skipped" and "static batch of 1" in rows[("352x352", 4)].note
    assert rows[("352x352", 4)].latency_p50_ms is None


def test_dynamic_batch_model_runs_batches(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(cache))
    name = make_dynamic_batch_yolox(cache)
    report = run_bench([name], batch=[1, 2], isolate=False, **QUICK)
    assert [(r.batch, r.status) for r in report.rows] == [(1, "ok"), (2, "ok")]
    b1, b2 = report.rows
    assert b2.peak_rss_mb >= b1.peak_rss_mb  # the running peak of the same process only grows
    assert b2.images_per_s > 0 and b2.latency_p50_ms > 0


def test_isolated_process_and_failed_model(tmp_path, monkeypatch):
    # a card whose file is missing: the child process reports the failure as a row, the run goes on
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("SPOTDET_MODEL_DIR", f"{empty}")
    report = run_bench(["yolo11n-int8"], isolate=True, **QUICK)
    (row,) = report.rows
    assert row.status == "failed" and "yolo11n_int8.onnx" in row.note


def test_isolated_measurement():
    report = run_bench(["fastestdet"], isolate=True, **QUICK)
    (row,) = report.rows
    assert row.ok and row.peak_rss_mb > 50 and row.images_per_s > 0


def test_unknown_model_fails_before_measuring():
    with pytest.raises(ModelNotFoundError):
        run_bench(["fastestdet", "no-such-model"], isolate=False, **QUICK)


@pytest.mark.parametrize("text", ["a,b", "0", "-1,2", ","])
def test_bad_size_lists(text):
    with pytest.raises(UsageError):
        parse_sizes(text, "imgsz")


def test_timing_inputs(tmp_path):
    imgs, label = timing_images()
    assert len(imgs) == 2 and "synthetic" in label
    imgs, label = timing_images(data=VAL_DIR)
    assert len(imgs) == 8 and imgs[0].ndim == 3
    with pytest.raises(UsageError):
        timing_images(images=[tmp_path])  # an empty folder


def test_cache_merges_and_reloads(tmp_path):
    report = run_bench(["fastestdet"], isolate=False, **QUICK)
    path = save_cached(report)
    assert path == cache_path(report.machine) and str(tmp_path) in str(path)
    first = load_cached(report.machine)
    assert [r.key() for r in first.rows] == [r.key() for r in report.rows]
    other = BenchRow("yolox-nano", "fp32", None, "416x416", 1, "CPUExecutionProvider", None, latency_p50_ms=1.0,
                     latency_p95_ms=1.0, images_per_s=10.0)
    report.rows = [other]
    save_cached(report)
    merged = load_cached(report.machine)
    assert {r.model for r in merged.rows} == {"fastestdet", "yolox-nano"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"nonsense": 1}]}))
    with pytest.raises(UsageError):
        load_report(bad)
    bad.write_text("{not json")
    with pytest.raises(UsageError):
        load_report(bad)
