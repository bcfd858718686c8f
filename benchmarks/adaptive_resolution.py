"""Adaptive resolution: mAP against input pixels per image for fixed sizes and for ``imgsz="auto"``.

    python benchmarks/adaptive_resolution.py [--models /tmp/spotdet-dyn/picodet-s-416-dyn.onnx,...]
        [--data ../shared/data/coco-val-dev] [--sizes 256,320,416,512] [--chart docs/...png]

The models must accept a variable input size (``spotdet optimize MODEL --dynamic-shape``). For each model:

1. every fixed size in ``--sizes`` runs over the data set (mAP@0.5:0.95 at conf 0.001 / max 100, input pixels
   per image, ms per image from the Detector's own stage timings);
2. the default ``AdaptivePolicy`` runs for real through ``Detector.stream(imgsz="auto")`` and is compared with
   the straight line between the two fixed sizes it chooses from, at its own pixels per image (auto - line),
   and with the fixed-size curve through every size run (auto - curve, the stricter test where the curve is
   concave);
3. the same comparison on each half of the data set (image id even / odd), replayed from the fixed runs: a
   pass is deterministic, so choosing per image between the small and the large run's boxes is exactly what
   ``imgsz="auto"`` returns (step 2 checks the replay against the real run on all images).

coco-val-dev is 103 images: differences under ~1 point are within what a different sample would move, which
the two halves show.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
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


@dataclass
class Run:
    """One pass of a model over a data set at one setting: per image Results, and the score."""

    results: dict[str, Result]
    map50_95: float
    pixels: float
    ms: float


def image_ids(ds: CocoDataset) -> dict[str, int]:
    return {str(ds.image_dir / info["file_name"]): info["id"] for info in ds.images}


def score(ds: CocoDataset, names: dict[int, str], results: dict[str, Result], keep: set[int] | None = None) -> float:
    """mAP@0.5:0.95 in points of one Result per image, on the images whose id is in ``keep`` (all by default)."""
    ids, cats = image_ids(ds), category_map(names, ds.categories)
    dets = [d for path, r in results.items() for d in r.to_coco(ids[path], cats)]
    return score_detections(ds.data, dets, [i for i in ids.values() if keep is None or i in keep])[0] * 100


def run(det: Detector, ds: CocoDataset, imgsz: Any) -> Run:
    """Stream the data set at ``imgsz`` (an int or "auto") with the evaluation settings."""
    results = {r.path: r for r in det.stream(list(image_ids(ds)), imgsz=imgsz, conf=EVAL_CONF,
                                             max_det=EVAL_MAX_DET, keep_image=False, exif_orientation=False)}
    return Run(results, score(ds, det.names, results), float(np.mean([r.input_pixels for r in results.values()])),
               float(np.mean([r.timings["total_ms"] for r in results.values()])))


def replay(ds: CocoDataset, names: dict[int, str], small: Run, large: Run, policy: AdaptivePolicy,
           keep: set[int] | None = None) -> tuple[float, float, float]:
    """(mAP, pixels/img, escalated fraction) that ``policy`` gives, from the two fixed runs, on the images
    whose id is in ``keep`` (all by default)."""
    ids = image_ids(ds)
    chosen, pixels, up = {}, [], 0
    for path, first in small.results.items():
        if keep is not None and ids[path] not in keep:
            continue
        escalate = escalation_reason(first, policy) is not None
        chosen[path] = large.results[path] if escalate else first
        pixels.append(first.input_pixels + (large.results[path].input_pixels if escalate else 0))
        up += escalate
    return score(ds, names, chosen, keep), float(np.mean(pixels)), up / len(chosen)


def line(small: tuple[float, float], large: tuple[float, float], pixels: float) -> float:
    """The straight line between two (pixels, mAP) points, at ``pixels``."""
    t = (pixels - small[0]) / (large[0] - small[0])
    return small[1] + t * (large[1] - small[1])


def curve(fixed: list[Run], pixels: float) -> float:
    """The fixed-size curve (straight pieces between neighbouring sizes) at ``pixels``."""
    return float(np.interp(pixels, [r.pixels for r in fixed], [r.map50_95 for r in fixed]))


def subset(ds: CocoDataset, names: dict[int, str], fixed: Run, keep: set[int]) -> tuple[float, float]:
    """(pixels/img, mAP) of a fixed run on the images whose id is in ``keep``."""
    results = {p: fixed.results[p] for p, i in image_ids(ds).items() if i in keep}
    return float(np.mean([r.input_pixels for r in results.values()])), score(ds, names, results, keep)


def halves(ds: CocoDataset, names: dict[int, str], small: Run, large: Run, policy: AdaptivePolicy) -> list[str]:
    """auto - line on the images with an even id and on those with an odd id (replayed, exact)."""
    rows = []
    for label, parity in (("even", 0), ("odd", 1)):
        keep = {i for i in image_ids(ds).values() if i % 2 == parity}
        m, px, frac = replay(ds, names, small, large, policy, keep)
        lo, hi = subset(ds, names, small, keep), subset(ds, names, large, keep)
        rows.append(f"| {label} ({len(keep)}) | {lo[1]:.2f} | {hi[1]:.2f} | {m:.2f} | {px / 1e3:.0f}k | "
                    f"{frac:.0%} | {m - line(lo, hi, px):+.2f} |")
    return rows


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
    ap.add_argument("--sizes", default="256,320,416,512", help="fixed sizes; must include the policy's two")
    ap.add_argument("--chart", type=Path, default=REPO / "docs" / "resolution-frontier.png")
    args = ap.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    data = load_dataset(args.data)
    curves = {}
    for model in args.models.split(","):
        det = Detector(model, backend="onnxruntime")
        policy = det.adaptive_policy
        print(f"\n## {det.name} ({policy})")
        fixed = {s: run(det, data, s) for s in sizes}
        auto = run(det, data, "auto")
        print(f"\n{args.data.name}\n| imgsz | mAP@0.5:0.95 | px/img | ms/img |\n|---|---:|---:|---:|")
        for s, r in [*fixed.items(), (f"auto ({policy.small}/{policy.large})", auto)]:
            print(f"| {s} | {r.map50_95:.2f} | {r.pixels / 1e3:.0f}k | {r.ms:.1f} |", flush=True)
        small, large = fixed[policy.small], fixed[policy.large]
        ref = line((small.pixels, small.map50_95), (large.pixels, large.map50_95), auto.pixels)
        escalated = np.mean([len(r.passes) > 1 for r in auto.results.values()])
        replayed = replay(data, det.names, small, large, policy)
        print(f"\nauto escalated {escalated:.0%} of images; line between {policy.small} and {policy.large} at "
              f"{auto.pixels / 1e3:.0f}k px: {ref:.2f}; auto - line: {auto.map50_95 - ref:+.2f}; fixed-size curve "
              f"there: {curve(list(fixed.values()), auto.pixels):.2f}, auto - curve: "
              f"{auto.map50_95 - curve(list(fixed.values()), auto.pixels):+.2f} (replayed from the fixed runs: "
              f"{replayed[0]:.2f} mAP at {replayed[1] / 1e3:.0f}k px)")
        print(f"\nhalves by image id (replayed)\n| images | {policy.small} | {policy.large} | auto | px/img | "
              "escalated | auto - line |\n|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(halves(data, det.names, small, large, policy)), flush=True)
        curves[det.name] = ([fixed[s] for s in sizes], sizes, auto)
    chart(curves, args.chart)
    print(f"\nchart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
