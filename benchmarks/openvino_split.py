"""OpenVINO: a stream of images split over parallel streams vs one image at a time, side by side.

    python benchmarks/openvino_split.py [--data ../shared/data/coco128-train] [--models yolox-nano,picodet-s-416]
                                        [--images 64] [--rounds 3]

Every zoo file has a batch of 1. On OpenVINO, ``Detector.stream`` (what eval, batch jobs and ``detect`` on a
folder use) hands such a model batches of 8 anyway (``Detector.takes_batches``): the backend runs each image of
the batch as its own request on a throughput compile (one stream per core or pair of cores). The alternative is
one image at a time on the latency compile (every core on one image). Both are loaded together and timed in
interleaved rounds (split, one at a time, split, ...), so a burst of load on this shared machine hits them
alike; a cell is the median over rounds of images/s, and the speed-up is the median over rounds of the ratio
within a round. The outputs are the same either way (tests/backends/test_openvino.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from spotdet import Detector
from spotdet.vision.sources import list_images

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPOTDET_SHARED", REPO.parent / "shared"))


def images_per_s(det: Detector, paths: list[str]) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in det.stream(paths, keep_image=False))
    return count / (time.perf_counter() - start)


def one_at_a_time(name: str) -> Detector:
    """The same model on OpenVINO with the batch split turned off: what ``stream`` did before."""
    det = Detector(name, backend="openvino")
    det.backend.split_batches = False
    return det


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "coco128-train")
    ap.add_argument("--models", default="yolox-nano,picodet-s-416,picodet-s-320")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    paths = [str(p) for p in list_images(args.data)][:args.images]
    print(f"{len(paths)} images from {args.data}, {args.rounds} interleaved rounds, {os.cpu_count()} cores")
    print("| model | split over streams (images/s) | one at a time (images/s) | speed-up |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        split, single = Detector(name, backend="openvino"), one_at_a_time(name)
        assert split.takes_batches and not single.takes_batches
        images_per_s(split, paths[:8])  # warm-up: the throughput compile is made on the first batch
        images_per_s(single, paths[:8])
        rows = []
        for _ in range(args.rounds):
            a, b = images_per_s(split, paths), images_per_s(single, paths)
            rows.append((a, b, a / b))
        med = [statistics.median(r[i] for r in rows) for i in range(3)]
        print(f"| {name} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
