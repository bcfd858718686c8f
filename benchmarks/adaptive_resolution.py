"""Adaptive resolution: mAP against input pixels per image for fixed sizes and for ``imgsz="auto"``.

    python benchmarks/adaptive_resolution.py [--models /tmp/spotdet-dyn/picodet-s-416-dyn.onnx,...]
        [--data ../shared/data/coco-val-dev] [--tune-data ../shared/data/coco128-train] [--chart docs/...png]

The models must accept a variable input size (``spotdet optimize MODEL --dynamic-shape``). For each model:

1. every fixed size in ``--sizes`` runs over both data sets (mAP@0.5:0.95 at conf 0.001 / max 100, input pixels
   per image, ms per image from the Detector's own stage timings);
2. tuning, on ``--tune-data`` only: the thresholds of ``AdaptivePolicy`` are swept by replaying the policy on
   the fixed-size runs (a pass is deterministic, so choosing per image between the small and the large run's
   boxes is exactly what ``imgsz="auto"`` returns); the score of a policy is its mAP minus the straight line
   between the two fixed sizes at the same pixels per image;
3. the default ``AdaptivePolicy`` (whose thresholds came from step 2) runs for real through
   ``Detector.stream(imgsz="auto")`` on ``--data``, which the tuning never saw, and is compared with the line
   between the two fixed sizes it chooses from.

coco128-train holds COCO *train* images (the models have seen them): its mAPs are only used to rank
thresholds, never reported as accuracy. coco-val-dev is 103 images: differences under ~1 point are within
what a different sample of 103 images would move.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spotdet import Detector
from spotdet.adaptive import AdaptivePolicy, escalation_reason
from spotdet.eval.coco import EVAL_CONF, EVAL_MAX_DET, CocoDataset, category_map, load_dataset, score_detections
from spotdet.results import Result

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPOTDET_SHARED", REPO.parent / "shared"))
DYN = Path("/tmp/spotdet-dyn")
DEFAULT_MODELS = f"{DYN}/picodet-s-416-dyn.onnx,{DYN}/yolox-nano-dyn.onnx"
GRID = {"evidence_conf": (0.2, 0.3, 0.4, 0.5), "small_side": (8.0, 12.0, 16.0, 24.0, 32.0, 48.0),
        "min_small": (1, 2, 3, 5)}


@dataclass
class Run:
    """One pass of a model over a data set at one setting: per image Results, and the score."""

    results: dict[str, Result]
    map50_95: float
    pixels: float
    ms: float


def image_ids(ds: CocoDataset) -> dict[str, int]:
    return {str(ds.image_dir / info["file_name"]): info["id"] for info in ds.images}


def score(ds: CocoDataset, names: dict[int, str], results: dict[str, Result]) -> float:
    """mAP@0.5:0.95 in points of one Result per image."""
    ids, cats = image_ids(ds), category_map(names, ds.categories)
    dets = [d for path, r in results.items() for d in r.to_coco(ids[path], cats)]
    return score_detections(ds.data, dets, list(ids.values()))[0] * 100


def run(det: Detector, ds: CocoDataset, imgsz: Any) -> Run:
    """Stream the data set at ``imgsz`` (an int or "auto") with the evaluation settings."""
    results = {r.path: r for r in det.stream(list(image_ids(ds)), imgsz=imgsz, conf=EVAL_CONF,
                                             max_det=EVAL_MAX_DET, keep_image=False, exif_orientation=False)}
    return Run(results, score(ds, det.names, results), float(np.mean([r.input_pixels for r in results.values()])),
               float(np.mean([r.timings["total_ms"] for r in results.values()])))


def replay(ds: CocoDataset, names: dict[int, str], small: Run, large: Run, policy: AdaptivePolicy) -> tuple[float, float, float]:
    """(mAP, pixels/img, escalated fraction) that ``policy`` gives, from the two fixed runs."""
    chosen, pixels, up = {}, [], 0
    for path, first in small.results.items():
        escalate = escalation_reason(first, policy) is not None
        chosen[path] = large.results[path] if escalate else first
        pixels.append(first.input_pixels + (large.results[path].input_pixels if escalate else 0))
        up += escalate
    return score(ds, names, chosen), float(np.mean(pixels)), up / len(chosen)


def line(small: Run, large: Run, pixels: float) -> float:
    """The straight line between the two fixed sizes' (pixels, mAP), at ``pixels``."""
    t = (pixels - small.pixels) / (large.pixels - small.pixels)
    return small.map50_95 + t * (large.map50_95 - small.map50_95)


def tune(ds: CocoDataset, names: dict[int, str], small: Run, large: Run, base: AdaptivePolicy,
         top: int = 5) -> list[tuple[float, AdaptivePolicy, float, float, float]]:
    """Every threshold combination of GRID, best margin over the line first."""
    rows = []
    for values in itertools.product(*GRID.values()):
        policy = replace(base, **dict(zip(GRID, values)))
        m, px, frac = replay(ds, names, small, large, policy)
        rows.append((m - line(small, large, px), policy, m, px, frac))
    rows.sort(key=lambda r: -r[0])
    return rows[:top]


def chart(curves: dict[str, tuple[list[Run], list[int], Run | None]], path: Path) -> None:
    """mAP against input pixels per image: each model's fixed sizes as a line, its auto run as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for k, (name, (fixed, sizes, auto)) in enumerate(curves.items()):
        color = f"C{k}"
        ax.plot([r.pixels / 1e3 for r in fixed], [r.map50_95 for r in fixed], "o-", color=color,
                label=f"{name} fixed")
        for r, s in zip(fixed, sizes):
            ax.annotate(str(s), (r.pixels / 1e3, r.map50_95), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=color)
        if auto is not None:
            ax.plot([auto.pixels / 1e3], [auto.map50_95], "*", ms=14, color=color, label=f"{name} auto")
    ax.set_xlabel("network input pixels per image (thousands)")
    ax.set_ylabel("mAP@0.5:0.95 (coco-val-dev, 103 images)")
    ax.set_title("Fixed input sizes vs imgsz='auto'")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated variable-size models")
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "coco-val-dev")
    ap.add_argument("--tune-data", type=Path, default=SHARED / "data" / "coco128-train")
    ap.add_argument("--sizes", default="256,320,416,512,640")
    ap.add_argument("--chart", type=Path, default=REPO / "docs" / "resolution-frontier.png")
    ap.add_argument("--no-tune", action="store_true", help="skip the threshold sweep")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    data, tune_data = load_dataset(args.data), load_dataset(args.tune_data)
    curves = {}
    for model in args.models.split(","):
        det = Detector(model, backend="onnxruntime")
        policy = det.adaptive_policy
        print(f"\n## {det.name} (default policy {policy})")
        fixed = {s: run(det, data, s) for s in sizes}
        print("\ncoco-val-dev\n| imgsz | mAP@0.5:0.95 | px/img | ms/img |\n|---|---:|---:|---:|")
        for s, r in fixed.items():
            print(f"| {s} | {r.map50_95:.2f} | {r.pixels / 1e3:.0f}k | {r.ms:.1f} |", flush=True)
        auto = run(det, data, "auto")
        small, large = fixed[policy.small], fixed[policy.large]
        ref = line(small, large, auto.pixels)
        escalated = np.mean([len(r.passes) > 1 for r in auto.results.values()])
        print(f"| auto ({policy.small}/{policy.large}) | {auto.map50_95:.2f} | {auto.pixels / 1e3:.0f}k | "
              f"{auto.ms:.1f} |")
        replayed = replay(data, det.names, small, large, policy)
        print(f"\nauto escalated {escalated:.0%} of images; line between {policy.small} and {policy.large} at "
              f"{auto.pixels / 1e3:.0f}k px: {ref:.2f} mAP; auto - line: {auto.map50_95 - ref:+.2f} "
              f"(replayed from the fixed runs: {replayed[0]:.2f} mAP at {replayed[1] / 1e3:.0f}k px)")
        curves[det.name] = ([fixed[s] for s in sizes], sizes, auto)
        if not args.no_tune:
            t_small, t_large = run(det, tune_data, policy.small), run(det, tune_data, policy.large)
            print(f"\ntuning on {args.tune_data.name} ({policy.small}: {t_small.map50_95:.2f}, {policy.large}: "
                  f"{t_large.map50_95:.2f}; train images: ranks only)\n"
                  "| margin over line | evidence_conf | small_side | min_small | px/img | escalated |\n"
                  "|---:|---:|---:|---:|---:|---:|")
            best = tune(tune_data, det.names, t_small, t_large, policy)
            for margin, p, m, px, frac in best:
                print(f"| {margin:+.2f} | {p.evidence_conf} | {p.small_side:g} | {p.min_small} | {px / 1e3:.0f}k | "
                      f"{frac:.0%} |", flush=True)
            tuned = best[0][1]
            m, px, frac = replay(data, det.names, small, large, tuned)
            print(f"\nthe best tuned policy on coco-val-dev (replayed; never used in tuning): {m:.2f} mAP at "
                  f"{px / 1e3:.0f}k px, {frac:.0%} escalated; - line: {m - line(small, large, px):+.2f}")
    chart(curves, args.chart)
    print(f"\nchart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
