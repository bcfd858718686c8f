"""The only code in spotdet that times a model (``spotdet bench`` and ``spotdet optimize --auto`` both use it).

What one measurement is: a batch of already-decoded images goes through resize/letterbox, tensor
conversion, the backend run and the family decoder + NMS (conf 0.25), exactly as ``Detector`` does it
(``Detector.prepare`` + ``Detector.infer``). File decoding is not included. Per-image latency is the
batch's wall time divided by the batch size.

How long: ``WARMUP_BATCHES`` batches are run and discarded; then batches are timed in rounds of
``ROUND_BATCHES`` until at least ``MIN_BATCHES`` are timed and the median of all timed batches moves by
less than ``tolerance`` between two rounds, or ``max_seconds`` runs out (the row then says the median was
not stable). p50/p95 are taken over the per-image times of every timed batch.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

from spotdet.bench.report import BenchRow
from spotdet.errors import UsageError
from spotdet.hardware import fingerprint

BENCH_CONF = 0.25
WARMUP_BATCHES = 3
ROUND_BATCHES = 10
MIN_BATCHES = 20

Emit = Callable[..., None]  # progress events: ("task", key, description, completed, total) | ("remove", key)


def run_batch(det, images: list[np.ndarray], size: tuple[int, int]) -> float:
    """Seconds for one batch: preprocess + inference + decode/NMS, as the Detector does it."""
    options = det.options_for(conf=BENCH_CONF)
    t0 = time.perf_counter()
    det.infer([det.prepare(img, size, keep_image=False) for img in images], options)
    return time.perf_counter() - t0


def time_until_stable(det, images: list[np.ndarray], size: tuple[int, int], batch: int, tolerance: float = 0.05,
                      max_seconds: float = 15.0, warmup: int = WARMUP_BATCHES,
                      on_round: Callable[[int], None] | None = None) -> tuple[list[float], bool]:
    """Per-batch seconds after warm-up, timed in rounds until the median is stable (or time runs out)."""
    def batch_at(i: int) -> list[np.ndarray]:
        return [images[(i * batch + j) % len(images)] for j in range(batch)]

    for i in range(warmup):
        run_batch(det, batch_at(i), size)
    times: list[float] = []
    prev = None
    start = time.perf_counter()
    while True:
        for _ in range(ROUND_BATCHES):
            times.append(run_batch(det, batch_at(len(times)), size))
        median = statistics.median(times)
        stable = prev is not None and len(times) >= MIN_BATCHES and abs(median - prev) / prev < tolerance
        if on_round:
            on_round(len(times))
        if stable:
            return times, True
        if time.perf_counter() - start > max_seconds:
            return times, False
        prev = median


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(det, size: int | None, batch: int, images: list[np.ndarray], threads: int | None = None,
            tolerance: float = 0.05, max_seconds: float = 15.0, emit: Emit = lambda *_: None) -> BenchRow:
    """Time ``det`` at input ``size`` (None = native) and ``batch``: one row with p50/p95 per image and images/s.

    A combination the model cannot run (a fixed input size, a static batch of 1) comes back as a skipped
    row with the reason; a runtime error (e.g. out of memory at a large batch) as a failed row.
    """
    row = BenchRow(det.name, det.precision, size, "?", batch, det.provider, threads, backend=det.backend.name,
                   hardware=fingerprint()["id"])
    try:
        hw = det.input_size(size)
    except UsageError as exc:
        row.status, row.note = "skipped", str(exc)
        row.input = f"{size}x{size}" if size else "?"
        return row
    row.input = f"{hw[0]}x{hw[1]}"
    if batch > 1 and not det.dynamic_batch:
        row.status = "skipped"
        row.note = (f"{det.name} has a static batch of 1; batch {batch} needs a dynamic-batch export "
                    f"(`spotdet optimize {det.name} --dynamic-batch`)")
        return row
    label = f"{det.name} {row.input} b{batch}"
    emit("task", label, f"  {label}: warm-up", 0, None)
    try:
        times, stable = time_until_stable(
            det, images, hw, batch, tolerance=tolerance, max_seconds=max_seconds,
            on_round=lambda n: emit("task", label, f"  {label}: {n} batches timed", n, None))
    except Exception as exc:  # ORT errors at run time (e.g. out of memory at a large batch)
        row.status, row.note = "failed", f"{type(exc).__name__}: {exc}"
        return row
    finally:
        emit("remove", label)
    per_image = [t / batch * 1000.0 for t in times]
    row.latency_p50_ms = round(percentile(per_image, 50), 3)
    row.latency_p95_ms = round(percentile(per_image, 95), 3)
    row.images_per_s = round(batch * len(times) / sum(times), 2)
    row.batches_timed = len(times)
    row.stable = stable
    if not stable:
        row.note = f"median not stable within {tolerance:.0%} after {max_seconds:g}s"
    return row


def interleaved_ms(candidates: dict[str, Callable[[], object]], rounds: int = 21, warmup: int = 3,
                   max_seconds: float = 3.0) -> dict[str, float]:
    """Median milliseconds per call of each candidate, timed side by side: each round calls every candidate
    once, in turn, so drift in the machine's speed (up to 2x within minutes on a shared machine) hits them all
    alike. Stops after ``rounds`` rounds or ``max_seconds`` (at least 3 rounds)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    start = time.perf_counter()
    for i in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000.0)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return {name: round(statistics.median(t), 3) for name, t in times.items()}
