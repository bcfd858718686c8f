"""bench.measure: one measurement (a batch through prepare + infer + NMS), rounds until stable, one row."""

from __future__ import annotations

import statistics

import pytest

from spotdet.bench import measure as bench_measure
from spotdet.bench.inputs import timing_images
from spotdet.bench.measure import MIN_BATCHES, ROUND_BATCHES, WARMUP_BATCHES, measure, run_batch, time_until_stable
from support.cpu import needs_native_bf16


@pytest.fixture(scope="module")
def images():
    return timing_images()[0]


def test_one_batch_goes_through_the_detector(detectors, images, monkeypatch):
    det = detectors("fastestdet")
    seen = []
    real_infer = det.infer

    def infer(batch, options):
        seen.append((len(batch), batch[0].size, options.conf, batch[0].keep_image))
        return real_infer(batch, options)

    monkeypatch.setattr(det, "infer", infer)
    seconds = run_batch(det, images[:2], (352, 352))
    assert seconds > 0
    assert seen == [(2, (352, 352), bench_measure.BENCH_CONF, False)]  # one infer call for the whole batch


def test_rounds_until_the_median_is_stable(detectors, images, monkeypatch):
    det = detectors("fastestdet")
    calls = []
    real = bench_measure.run_batch

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(bench_measure, "run_batch", counted)
    rounds = []
    times, stable = time_until_stable(det, images, (352, 352), 1, tolerance=0.5, max_seconds=30,
                                      on_round=rounds.append)
    assert stable and len(times) >= MIN_BATCHES and len(times) % ROUND_BATCHES == 0
    assert rounds == list(range(ROUND_BATCHES, len(times) + 1, ROUND_BATCHES))
    assert len(calls) == WARMUP_BATCHES + len(times)  # the warm-up batches are run but not kept


def test_time_cap_ends_an_unstable_run(detectors, images):
    det = detectors("fastestdet")
    times, stable = time_until_stable(det, images, (352, 352), 1, tolerance=1e-9, max_seconds=0.01)
    assert not stable and len(times) == ROUND_BATCHES  # one round, then the cap


def test_row_figures_come_from_the_timed_batches(detectors, images, monkeypatch):
    det = detectors("fastestdet")
    durations = []
    real = bench_measure.run_batch

    def recorded(*args):
        seconds = real(*args)
        durations.append(seconds)
        return seconds

    monkeypatch.setattr(bench_measure, "run_batch", recorded)
    row = measure(det, None, 1, images, tolerance=0.2, max_seconds=1.0)
    timed = durations[WARMUP_BATCHES:]
    assert row.ok and row.input == "352x352" and row.precision == "fp32" and row.device == det.provider
    assert row.batches_timed == len(timed)
    assert row.latency_p50_ms == pytest.approx(statistics.median(timed) * 1000, abs=1e-3)
    assert row.latency_p50_ms <= row.latency_p95_ms <= max(timed) * 1000 + 1e-3
    assert row.images_per_s == pytest.approx(len(timed) / sum(timed), rel=1e-3)


def test_combinations_a_model_cannot_run_are_skipped(detectors, images):
    det = detectors("fastestdet")
    other_size = measure(det, 320, 1, images)
    assert other_size.status == "skipped" and "fixed input of 352x352" in other_size.note
    assert other_size.input == "320x320" and other_size.latency_p50_ms is None
    batched = measure(det, None, 4, images)
    assert batched.status == "skipped" and "static batch of 1" in batched.note and batched.input == "352x352"


@pytest.mark.parametrize("backend, precision", [("onnxruntime", None), ("openvino", None),
                                                pytest.param("openvino", "bf16", marks=needs_native_bf16)])
def test_rows_name_the_backend_and_the_precision_it_ran_at(backend, precision, photos):
    if backend == "openvino":
        pytest.importorskip("openvino")
    from spotdet import Detector

    det = Detector("fastestdet", backend=backend, precision=precision)
    row = measure(det, None, 1, [photos["chelsea"]], tolerance=0.5, max_seconds=0.5)
    assert (row.backend, row.precision) == (backend, precision or "fp32") and row.ok
    assert row.device == det.provider
