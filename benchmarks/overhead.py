"""Pipeline overhead: end-to-end time per image (read + decode JPEG -> Results) vs the bare session.run.

Both are measured in the same run, on the same images, with the same ONNX Runtime session, alternating
rounds so machine noise hits both alike. Prints a table and the overhead ratio
(end-to-end - session.run) / session.run; the target for yolox-nano on 640x480 JPEGs is under 25%.

    python benchmarks/overhead.py [--model yolox-nano] [--data ../shared/data/coco-val-dev/images]
                                  [--size 640x480] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

from spotdet import Detector
from spotdet.vision.preprocess import preprocess

REPO = Path(__file__).resolve().parents[1]


def pick_images(folder: Path, size: tuple[int, int] | None) -> list[Path]:
    images = sorted(folder.glob("*.jpg"))
    if size is None:
        return images
    return [p for p in images if cv2.imread(str(p)).shape[1::-1] == size]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco-val-dev" / "images")
    ap.add_argument("--size", default="640x480", help="only images of this WxH ('any' for all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    size = None if args.size == "any" else tuple(int(v) for v in args.size.split("x"))
    images = pick_images(args.data, size)
    if not images:
        print(f"no {args.size} JPEGs in {args.data}", file=sys.stderr)
        return 2
    det = Detector(args.model, threads=args.threads)
    hw = det.input_size()
    tensors = [preprocess(cv2.imread(str(p)), hw, det.card.preprocess)[0] for p in images]
    det(str(images[0]))  # warm-up: first run allocates arenas
    det.backend.run(tensors[0])

    e2e, raw, stages = [], [], {"decode_ms": [], "preprocess_ms": [], "infer_ms": [], "postprocess_ms": []}
    streamed, raw_loop = [], []
    paths = [str(p) for p in images]
    for _ in range(args.rounds):
        # Streamed: a list of files through Detector.stream, decoding ahead of inference.
        t = time.perf_counter()
        for tensor in tensors:
            det.backend.run(tensor)
        raw_loop.append((time.perf_counter() - t) * 1000 / len(tensors))
        t = time.perf_counter()
        for _result in det.stream(paths, keep_image=False):
            pass
        streamed.append((time.perf_counter() - t) * 1000 / len(paths))
        # Single calls: one file per call, every stage on the caller's thread.
        for path, tensor in zip(images, tensors):
            t = time.perf_counter()
            det.backend.run(tensor)
            raw.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            result = det(str(path), keep_image=False)[0]
            e2e.append((time.perf_counter() - t) * 1000)
            for k in stages:
                stages[k].append(result.timings[k])

    med = statistics.median
    raw_ms, e2e_ms = med(raw), med(e2e)
    print(f"model {det.name} on {det.provider}, {len(images)} images of {args.size}, {args.rounds} rounds "
          f"({len(e2e)} timed calls each)")
    print(f"{'measure':<32}{'median ms':>10}{'mean ms':>10}")
    print(f"{'session.run alone':<32}{raw_ms:>10.2f}{statistics.fmean(raw):>10.2f}")
    print(f"{'end-to-end (file -> Results)':<32}{e2e_ms:>10.2f}{statistics.fmean(e2e):>10.2f}")
    for k, v in stages.items():
        print(f"{'  stage: ' + k:<32}{med(v):>10.2f}{statistics.fmean(v):>10.2f}")
    print(f"{'session.run loop, per image':<32}{med(raw_loop):>10.2f}{statistics.fmean(raw_loop):>10.2f}")
    print(f"{'stream of files, per image':<32}{med(streamed):>10.2f}{statistics.fmean(streamed):>10.2f}")
    pre_post = med(stages["preprocess_ms"]) + med(stages["postprocess_ms"])
    print()
    print(f"pre+post overhead (preprocess + postprocess medians) / session.run: {pre_post / raw_ms * 100:6.1f}%")
    print(f"single call, file -> Results (decode included) vs session.run:      "
          f"{(e2e_ms - raw_ms) / raw_ms * 100:6.1f}%")
    print(f"stream of files (decode-ahead) vs session.run loop:                 "
          f"{(med(streamed) - med(raw_loop)) / med(raw_loop) * 100:6.1f}%   (target for all: < 25%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
