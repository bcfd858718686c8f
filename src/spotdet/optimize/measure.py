"""Measure one model file in a fresh process: size, peak memory after load + first run, latency, mAP.

Run as ``python -m spotdet.optimize.measure MODEL.onnx --data DIR`` (prints one JSON object); a process
per model keeps the peak-RSS figure free of the other variants' allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 2, 4, 8)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _p50_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


WARMUP_RUNS = 5


def measure(model: str | Path, data: Path | None, runs: int = 40, limit: int | None = None,
            threads: int | None = None) -> dict:
    from spotdet.detector import Detector
    from spotdet.eval.coco import evaluate, find_dataset
    from spotdet.vision.image_io import load_image
    from spotdet.vision.preprocess import preprocess

    det = Detector(model, threads=threads, allow_download=False)
    size = tuple(det.input_size())
    if data is not None:
        _, image_dir = find_dataset(data)
        first = next(p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        img = load_image(first)[0]
    else:
        img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    x1 = preprocess(img, size, det.card.preprocess)[0]
    det.backend.run(x1)
    peak_rss_mb = _peak_rss_mb()
    for _ in range(WARMUP_RUNS):
        det.backend.run(x1)
    per_image = {1: _p50_ms(lambda: det.backend.run(x1), runs)}
    if det.dynamic_batch:
        for b in BATCHES[1:]:
            xb = np.repeat(x1, b, axis=0)
            det.backend.run(xb)
            per_image[b] = _p50_ms(lambda: det.backend.run(xb), max(3, runs // b)) / b
    best = min(per_image, key=per_image.get)
    row = {"model": det.name, "file": str(det.model_path), "precision": det.card.precision,
           "dynamic_batch": det.dynamic_batch, "size_mb": round(os.path.getsize(det.model_path) / 1e6, 3),
           "peak_rss_mb": round(peak_rss_mb, 1), "p50_ms_b1": round(per_image[1], 2), "best_batch": best,
           "p50_ms_per_image_best": round(per_image[best], 2), "map50_95": None, "map50": None}
    if data is not None:
        report = evaluate(det, data, limit=limit)
        row.update(map50_95=report.map50_95, map50=report.map50, eval_images=report.images)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="zoo name, variant name or .onnx path")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    from spotdet.errors import SpotdetError

    try:
        row = measure(args.model, args.data, args.runs, args.limit, args.threads)
    except SpotdetError as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
