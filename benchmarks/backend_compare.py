"""ONNX Runtime vs OpenVINO fp32 vs OpenVINO bf16 on the zoo: end-to-end speed and mAP, side by side.

    python benchmarks/backend_compare.py [--data ../shared/data/coco-val-dev] [--models a,b] [--rounds 5]
                                         [--images 20] [--threads N] [--no-map]

Columns: the model as shipped on ONNX Runtime; its fp32 version on ONNX Runtime, OpenVINO fp32, OpenVINO
bf16 as spotdet compiles it (the first convolutions kept in f32, ``backends/openvino.py``) and OpenVINO bf16
with every convolution in bf16 ("all bf16", what OpenVINO does by itself). For the float zoo models "as shipped" is the fp32 file; for the dynamic-INT8 exports (yolov8n-int8,
yolo11n-int8) it is the INT8 file, and the fp32 version is its dequantized variant (``spotdet optimize NAME
--precision fp32``, built here into the cache when missing).

Speed is end to end, file -> Result (decode, preprocess, backend run, decode + NMS), per image, on the first
``--images`` images of the dataset. All configurations of one model are loaded together and timed in
interleaved rounds (A, B, C, D, A, B, ...), so a burst of load on this shared machine hits them alike; a cell
is the median over rounds of the round's mean, and the speed-up is the median over rounds of (as shipped /
OpenVINO bf16) measured in the same rounds; "bf16 speed vs all bf16" likewise (all bf16 / bf16: below 1 is what
the f32 stem costs). mAP@0.5:0.95 is COCO's, on every annotated image of ``--data``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from spotdet import Detector
from spotdet.backends.openvino import OpenVinoBackend
from spotdet.eval.coco import evaluate, find_dataset
from spotdet.models.card import find_variant, get_card, zoo
from spotdet.vision.sources import list_images

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("ORT as shipped", "ORT fp32", "OV fp32", "OV bf16", "OV all bf16")


def all_bf16(det: Detector, threads: int | None) -> Detector:
    """``det`` (a bf16 Detector) recompiled with no convolution kept in f32."""
    det.backend = OpenVinoBackend(det.model_path, threads=threads, precision="bf16", f32_stem=0)
    return det


def detectors(name: str, threads: int | None) -> list[Detector]:
    """One Detector per column (the first two are one object for a float model)."""
    card = get_card(name)
    if card.precision == "fp32":
        ort = Detector(name, backend="onnxruntime", threads=threads)
        return [ort, ort, Detector(name, backend="openvino", threads=threads),
                Detector(name, precision="bf16", threads=threads),
                all_bf16(Detector(name, precision="bf16", threads=threads), threads)]
    if find_variant(card, "fp32") is None:
        from spotdet.optimize import optimize

        print(f"building the fp32 (dequantized) variant of {name}", file=sys.stderr)
        optimize(name, "fp32", progress=False)
    return [Detector(name, backend="onnxruntime", threads=threads),
            Detector(name, precision="fp32", backend="onnxruntime", threads=threads),
            Detector(name, precision="fp32", backend="openvino", threads=threads),
            Detector(get_card(name + "-fp32"), precision="bf16", threads=threads),
            all_bf16(Detector(get_card(name + "-fp32"), precision="bf16", threads=threads), threads)]


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
    print(f"{len(paths)} images from {args.data.name}, {args.rounds} interleaved rounds, threads={args.threads}; "
          "ms per image end to end (file -> Result)")
    head = [f"{c} ms" for c in COLUMNS] + ["bf16 speed-up", "bf16 speed vs all bf16"] + ([] if args.no_map else [f"{c} mAP" for c in COLUMNS])
    print("| model | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for name in args.models.split(","):
        dets = detectors(name, args.threads)
        unique = list(dict.fromkeys(dets))  # a float model's first two columns are the same detector
        for det in unique:  # warm-up: first runs allocate and tune
            time_round(det, paths[:3])
        rounds: dict[int, list[float]] = {id(d): [] for d in unique}
        for _ in range(args.rounds):
            for det in unique:
                rounds[id(det)].append(time_round(det, paths))
        ms = [statistics.median(rounds[id(d)]) for d in dets]
        ratio = statistics.median(a / b for a, b in zip(rounds[id(dets[0])], rounds[id(dets[3])]))
        kept = statistics.median(a / b for a, b in zip(rounds[id(dets[4])], rounds[id(dets[3])]))
        cells = [f"{m:.1f}" for m in ms] + [f"{ratio:.2f}x", f"{kept:.2f}x"]
        if not args.no_map:
            maps = {id(d): evaluate(d, args.data).map50_95 for d in unique}
            cells += [f"{maps[id(d)]:.2f}" for d in dets]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
