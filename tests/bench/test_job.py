"""One model's bench in this process: rows per size x batch with memory, cost and mAP."""

from __future__ import annotations

import threading

import psutil
import pytest

from support.bench import make_dynamic_batch_yolox
from support.paths import MODEL_DIR, VAL_DIR
from spotdet.bench.harness import run_here
from spotdet.bench.job import Job
from spotdet.cost.formula import cost_per_1000_images


def job(name: str, batches=(1,), data=None, **kw) -> Job:
    settings = dict(imgsz=None, batches=list(batches), threads=None, device="auto", data=data, images=None,
                    price_per_hour=None, tolerance=0.2, max_seconds=1.0, map_limit=None)
    settings.update(kw)
    return Job(name, **settings)


def test_native_size_row_with_cost_and_map():
    events = []
    (row,) = run_here(job("fastestdet", data=str(VAL_DIR), map_limit=5, price_per_hour=0.5),
                      lambda *e: events.append(e))
    assert row.ok and row.batches_timed >= 20 and row.images_per_s > 0
    assert row.usd_per_1000 == pytest.approx(cost_per_1000_images(0.5, row.images_per_s), rel=1e-3)
    assert row.model_rss_mb is not None and 0 < row.model_rss_mb < row.peak_rss_mb
    assert row.file_mb == pytest.approx((MODEL_DIR / "fastestdet.onnx").stat().st_size / 2**20, abs=0.01)
    assert 0 < row.map50_95 < row.map50 <= 100 and "first 5 images" in row.map_data
    assert ("advance", 1) in events and any(e[0] == "task" and e[1].startswith("mAP") for e in events)


def test_missing_model_file_is_a_failed_row(tmp_path, monkeypatch):
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("SPOTDET_MODEL_DIR", str(empty))
    (row,) = run_here(job("yolo11n-int8", batches=(1, 2)), lambda *e: None)
    assert row.status == "failed" and "yolo11n_int8.onnx" in row.note


def test_peak_memory_against_independent_figures(tmp_path, monkeypatch):
    """The peak is checked against figures the reader did not produce: RSS sampled by this test's own
    thread while the bench ran, and the size of the larger input tensor at batch 8."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(cache))
    name = make_dynamic_batch_yolox(cache)
    proc, seen, done = psutil.Process(), [], threading.Event()

    def sample():
        while not done.wait(0.001):
            seen.append(proc.memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        b1, b8 = run_here(job(name, batches=(1, 8)), lambda *e: None)
    finally:
        done.set()
        sampler.join()
    assert (b1.batch, b8.batch) == (1, 8) and b1.ok and b8.ok
    # the kernel's high-water mark is never below an RSS the process had (2 MB slack for counter batching)
    assert b8.peak_rss_mb >= max(seen) - 2
    # batch 8 holds 7 more 416x416x3 float32 input images (plus larger activations) than batch 1
    extra_input_mb = 7 * 3 * 416 * 416 * 4 / 2**20
    assert b8.peak_rss_mb - b1.peak_rss_mb >= extra_input_mb
    assert b8.images_per_s > 0 and b8.latency_p50_ms > 0
