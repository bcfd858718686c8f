"""A fresh process per model: its memory is its own, its failures come back as rows, its progress arrives."""

from __future__ import annotations

import numpy as np
from rich.progress import Progress

from spotdet.bench.harness import ProgressSink, run_here, run_isolated, run_job
from spotdet.bench.job import Job

BALLAST_MB = 300


def job(name: str, batches=(1,)) -> Job:
    return Job(name, None, list(batches), None, "auto", None, None, None, 0.2, 1.0, None)


def test_isolated_peak_excludes_the_parent_memory():
    ballast = np.ones(BALLAST_MB * 2**20, dtype=np.uint8)  # resident in this (parent) process only
    try:
        (isolated,) = run_isolated(job("fastestdet"), lambda *e: None)
        (here,) = run_here(job("fastestdet"), lambda *e: None)
    finally:
        del ballast
    assert isolated.ok and here.ok
    assert 30 < isolated.peak_rss_mb < BALLAST_MB  # a fresh process: the parent's 300 MB are not in it
    assert here.peak_rss_mb > BALLAST_MB  # the same job in this process does carry them


def test_isolated_failure_comes_back_as_a_row(tmp_path, monkeypatch):
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("SPOTDET_MODEL_DIR", str(empty))  # the spawned child inherits the environment
    (row,) = run_job(job("yolo11n-int8"), lambda *e: None, isolate=True)
    assert row.status == "failed" and "yolo11n_int8.onnx" in row.note


def test_progress_events_reach_the_parent():
    with Progress(disable=True) as progress:
        sink = ProgressSink(progress, total=2)
        rows = run_job(job("fastestdet", batches=(1, 2)), sink, isolate=True)
        overall = progress.tasks[0]
        assert overall.completed == 2 and overall.total == 2  # one advance per combination, from the child
        assert len(progress.tasks) == 1  # the per-combination tasks were removed when they ended
    assert [(r.batch, r.status) for r in rows] == [(1, "ok"), (2, "skipped")]


def test_sink_without_progress_ignores_events():
    sink = ProgressSink(None, total=3)
    sink("advance", 1)
    sink("task", "k", "d", 0, None)
    sink("remove", "k")
    assert sink.tasks == {} and sink.overall is None
