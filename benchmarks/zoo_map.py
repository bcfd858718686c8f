"""mAP of every zoo model on a COCO folder, side by side with the cards' reference figures.

    python benchmarks/zoo_map.py [--data ../shared/data/coco-val-dev] [--models a,b,...]

Prints a Markdown table: measured mAP@0.5:0.95 and mAP@0.5, the reference dev mAP from the card
(../shared/models/MODELS.md), the difference, and images/s of the whole evaluation loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spotdet import Detector
from spotdet.eval.coco import evaluate
from spotdet.models.card import zoo

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco-val-dev")
    ap.add_argument("--models", default=",".join(zoo()))
    ap.add_argument("--backend", default="auto", help="auto | onnxruntime | openvino")
    ap.add_argument("--precision", default=None, help="e.g. bf16 (OpenVINO); default: each card's own")
    args = ap.parse_args(argv)
    print(f"backend {args.backend}, precision {args.precision or 'as the card'}")
    print("| model | mAP@0.5:0.95 | mAP@0.5 | reference dev mAP | diff | published mAP | images/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        det = Detector(name, backend=args.backend, precision=args.precision)
        r = evaluate(det, args.data)
        ref = det.card.reference_dev_map
        diff = "-" if ref is None else f"{r.map50_95 - ref:+.2f}"
        print(f"| {name} | {r.map50_95:.2f} | {r.map50:.2f} | {ref} | {diff} | {det.card.published_map} | "
              f"{r.images_per_s:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
