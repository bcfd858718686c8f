"""ONNX Runtime fp32 vs OpenVINO fp32 vs OpenVINO bf16 on the zoo: end-to-end speed and mAP, side by side.

    python benchmarks/backend_compare.py [--data ../shared/data/coco-val-dev] [--models a,b] [--rounds 5]
                                         [--threads N] [--no-map]

Speed is end to end, file -> Result (decode, preprocess, backend run, decode + NMS), per image, on the
first ``--images`` JPEGs of the dataset. The three configurations of one model are loaded together and timed
in interleaved rounds (A, B, C, A, B, C, ...), so a burst of load on this shared machine hits them alike;
the table gives the median over rounds of each round's mean, and the ratio to ONNX Runtime fp32 measured in
the same rounds. mAP@0.5:0.95 is COCO's, on every annotated image of ``--data``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from spotdet import Detector
from spotdet.eval.coco import evaluate, find_dataset
from spotdet.models.card import zoo
from spotdet.vision.sources import list_images

REPO = Path(__file__).resolve().parents[1]
CONFIGS = (("onnxruntime", None), ("openvino", None), ("openvino", "bf16"))


def label(backend: str, precision: str | None) -> str:
    return f"{'ORT' if backend == 'onnxruntime' else 'OV'} {precision or 'fp32'}"


def time_round(det: Detector, paths: list[str]) -> float:
    start = time.perf_counter()
    for path in paths:
        det(path, keep_image=False)
    return (time.perf_counter() - start) * 1000.0 / len(paths)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco-val-dev")
    ap.add_argument("--models", default=",".join(zoo()))
    ap.add_argument("--images", type=int, default=20, help="images timed per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: all cores)")
    ap.add_argument("--no-map", action="store_true", help="speed only")
    args = ap.parse_args(argv)
    _, image_dir = find_dataset(args.data)
    paths = [str(p) for p in list_images(image_dir)[: args.images]]
    heads = [label(*c) for c in CONFIGS]
    print(f"{len(paths)} images from {args.data.name}, {args.rounds} interleaved rounds, threads={args.threads}")
    print("| model | " + " | ".join(f"{h} ms/img" for h in heads) + " | OV bf16 speed-up | "
          + ("" if args.no_map else " | ".join(f"{h} mAP" for h in heads) + " |"))
    print("|---|" + "---:|" * (len(heads) + 1 + (0 if args.no_map else len(heads))))
    for name in args.models.split(","):
        dets = [Detector(name, backend=b, precision=p, threads=args.threads) for b, p in CONFIGS]
        for det in dets:  # warm-up: first runs allocate and tune
            time_round(det, paths[:3])
        rounds: list[list[float]] = [[] for _ in dets]
        for _ in range(args.rounds):
            for k, det in enumerate(dets):
                rounds[k].append(time_round(det, paths))
        ms = [statistics.median(r) for r in rounds]
        ratio = statistics.median(a / c for a, c in zip(rounds[0], rounds[2]))
        cells = [f"{m:.1f}" for m in ms] + [f"{ratio:.2f}x"]
        if not args.no_map:
            cells += [f"{evaluate(det, args.data).map50_95:.2f}" for det in dets]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
