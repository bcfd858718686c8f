"""Distillation: does a student taught by a teacher score better on images it never saw?

    python benchmarks/distill.py [--teacher yolo11n-int8] [--student yolox-nano] [--method dense|boxes]
        [--epochs 3] [--folds 2] [--imgsz N] [--freeze backbone|stem] [--out /tmp/spotdet-distill-bench] [--resume]

Data (labels of training images are never read): coco-val-dev is shuffled with a fixed seed and cut into
``--folds`` parts. Fold i holds part i out: the student is distilled on all of coco128-train plus the other
parts (as unlabelled images) and scored on part i, whose annotations are written as a COCO folder under
``--out/fold<i>/heldout`` (images referenced by path) that ``spotdet eval --data`` reads too. With two folds
every coco-val-dev image is scored once by a student that never saw it, which halves the noise of a single
~50-image held-out set.

Reported per fold, with the same evaluation (conf 0.001, max 100): the student's mAP@0.5:0.95 before
distillation, after each epoch (the EMA weights, exported to ONNX exactly as ``spotdet distill`` does), and the
teacher's; each with its input size, GFLOPs per image (from the cards: the student's does not change) and
images/s measured in the same run (noisy on a shared machine: read it as a ratio). Then the change of every
epoch averaged over the folds (weighted by their images). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from spotdet import Detector
from spotdet.atomic import atomic_write_text
from spotdet.distill.api import DEFAULT_CONF, DEFAULT_FREEZE, DEFAULT_METHOD
from spotdet.eval.coco import evaluate, load_dataset
from spotdet.vision.image_io import load_image
from spotdet.vision.preprocess import preprocess

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPOTDET_SHARED", REPO.parent / "shared")) / "data"


def folds(val_dir: Path, n: int, seed: int = 0) -> list[list[dict]]:
    """coco-val-dev's images cut into ``n`` parts of (nearly) equal size, after a seeded shuffle."""
    images = sorted(load_dataset(val_dir).images, key=lambda im: im["id"])
    random.Random(seed).shuffle(images)
    size = -(-len(images) // n)
    return [images[i * size:(i + 1) * size] for i in range(n)]


def write_heldout(val_dir: Path, heldout: list[dict], out: Path) -> Path:
    """A COCO folder of the held-out images only (absolute paths, nothing copied)."""
    dataset = load_dataset(val_dir)
    ids = {im["id"] for im in heldout}
    data = {"images": [{**im, "file_name": str(dataset.image_dir / im["file_name"])} for im in heldout],
            "annotations": [a for a in dataset.data["annotations"] if a["image_id"] in ids],
            "categories": dataset.categories}
    atomic_write_text(out / "heldout" / "instances.json", json.dumps(data))
    return out / "heldout"


def write_train_list(train_dir: Path, val_dir: Path, val_train: list[dict], out: Path) -> Path:
    """A text file listing the unlabelled training images (a batch-job source)."""
    paths = [str(p) for p in sorted((train_dir / "images").iterdir())]
    image_dir = load_dataset(val_dir).image_dir
    paths += [str(image_dir / im["file_name"]) for im in val_train]
    return atomic_write_text(out / "train-images.txt", "\n".join(paths) + "\n")


def score(model: Any, heldout: Path, label: str, imgsz: int | None = None) -> dict[str, Any]:
    det = Detector(model, threads=None)
    report = evaluate(det, heldout, imgsz=imgsz)
    size = det.input_size(imgsz)
    row = {"model": label, "map50_95": report.map50_95, "map50": report.map50, "input": f"{size[1]}x{size[0]}",
           "gflops": det.card.gflops, "images_per_s": report.images_per_s}
    print(json.dumps(row), flush=True)
    return row


def run_fold(args, fold: int, parts: list[list[dict]]) -> dict[str, Any]:
    """Distil on coco128-train plus every part but ``fold``; score on part ``fold``."""
    from spotdet.distill import distill
    from spotdet.distill.export import export_student
    from spotdet.models.ref import resolve_model

    val_dir, train_dir = DATA / "coco-val-dev", DATA / "coco128-train"
    out = args.out / f"fold{fold}"
    held = parts[fold]
    heldout = write_heldout(val_dir, held, out)
    train_list = write_train_list(train_dir, val_dir, [im for i, p in enumerate(parts) if i != fold for im in p], out)
    teacher = score(args.teacher, heldout, f"fold {fold}: teacher {args.teacher}")
    before = score(args.student, heldout, f"fold {fold}: student {args.student} before", args.imgsz)
    student = resolve_model(args.student)
    size = (args.imgsz, args.imgsz) if args.imgsz else tuple(student.card.input_size)
    first = Path(train_list.read_text().split()[0])
    probe = preprocess(load_image(first, exif_orientation=False)[0], size, student.card.preprocess)[0]
    curve: list[dict[str, Any]] = []

    def after_epoch(stats, module) -> None:
        path = out / "epochs" / f"epoch-{stats.epoch}.onnx"
        export_student(student.card, student.path, module, path, f"{args.student}-epoch{stats.epoch}",
                       "benchmark epoch", probe)
        row = score(path, heldout, f"fold {fold}: epoch {stats.epoch}", args.imgsz)
        curve.append({**row, "epoch": stats.epoch, "loss": round(stats.loss, 4),
                      "epoch_seconds": round(stats.seconds, 1), "images": stats.images})

    started = time.monotonic()
    result = distill(args.teacher, args.student, train_list, out / "run", epochs=args.epochs, lr=args.lr,
                     conf=args.conf, method=args.method, imgsz=args.imgsz, freeze=args.freeze, resume=args.resume,
                     on_epoch=after_epoch)
    return {"fold": fold, "heldout_images": len(held), "train_images": result.labelled_images,
            "pseudo_labels": result.labels, "distill_seconds": round(time.monotonic() - started, 1),
            "teacher": teacher, "before": before, "curve": curve}


def tables(summary: dict[str, Any]) -> list[str]:
    lines = ["| fold | held-out images | teacher | student before | " +
             " | ".join(f"epoch {e}" for e in range(1, summary["epochs"] + 1)) + " |",
             "|---" * (4 + summary["epochs"]) + "|"]
    for f in summary["folds"]:
        lines.append(f"| {f['fold']} | {f['heldout_images']} | {f['teacher']['map50_95']:.2f} | "
                     f"{f['before']['map50_95']:.2f} | " + " | ".join(
                         f"{c['map50_95']:.2f} ({c['map50_95'] - f['before']['map50_95']:+.2f})" for c in f["curve"])
                     + " |")
    lines.append("| mean change | | | | " + " | ".join(f"{d:+.2f}" for d in summary["mean_change"]) + " |")
    first = summary["folds"][0]
    lines += ["", "| model | input | GFLOPs | images/s (fold 0) |", "|---|---|---|---|",
              f"| teacher {summary['teacher']} | {first['teacher']['input']} | {first['teacher']['gflops']} | "
              f"{first['teacher']['images_per_s']:.1f} |",
              f"| student {summary['student']} (before and after) | {first['before']['input']} | "
              f"{first['before']['gflops']} | {first['before']['images_per_s']:.1f} |",
              "", "| fold | epoch | loss | epoch seconds |", "|---|---|---|---|"]
    lines += [f"| {f['fold']} | {c['epoch']} | {c['loss']} | {c['epoch_seconds']} |"
              for f in summary["folds"] for c in f["curve"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="yolo11n-int8")
    ap.add_argument("--student", default="yolox-nano")
    ap.add_argument("--method", choices=("dense", "boxes"), default=DEFAULT_METHOD)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--conf", type=float, default=DEFAULT_CONF)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--freeze", choices=("backbone", "stem"), default=DEFAULT_FREEZE,
                    help="what keeps its pretrained weights (distill's default: the backbone)")
    ap.add_argument("--imgsz", type=int, default=None, help="student input size (a variable-size student)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/spotdet-distill-bench"))
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    parts = folds(DATA / "coco-val-dev", args.folds)
    results = [run_fold(args, i, parts) for i in range(args.folds)]
    weights = [f["heldout_images"] for f in results]
    mean_change = [sum(w * (f["curve"][e]["map50_95"] - f["before"]["map50_95"]) for w, f in zip(weights, results))
                   / sum(weights) for e in range(args.epochs)]
    summary = {"teacher": args.teacher, "student": args.student, "imgsz": args.imgsz, "method": args.method,
               "freeze": args.freeze, "data": str(DATA),
               "epochs": args.epochs,
               "lr": args.lr, "conf": args.conf, "folds": results, "mean_change": [round(d, 3) for d in mean_change]}
    atomic_write_text(args.out / "results.json", json.dumps(summary, indent=2))
    lines = tables(summary)
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
