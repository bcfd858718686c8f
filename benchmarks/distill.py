"""Distillation: does a student fine-tuned on a teacher's pseudo-labels score better on images it never saw?

    python benchmarks/distill.py [--teacher yolo11n-int8] [--student yolox-nano] [--epochs 10] [--val-train 50]
        [--out /tmp/spotdet-distill-bench] [--resume]

Data (labels of training images are never read):
- unlabelled training images: all of coco128-train plus ``--val-train`` images of coco-val-dev, drawn with a
  fixed seed;
- held-out: the other coco-val-dev images, written as a COCO folder under ``--out`` (``heldout/``: annotations
  of those images only, images referenced by path) that ``spotdet eval --data`` reads too.

Reported, all on the held-out images with the same evaluation (conf 0.001, max 100): the student's mAP@0.5:0.95
before distillation, after each epoch (the EMA weights, exported to ONNX exactly as ``spotdet distill`` does), and
the teacher's; next to each its input size, GFLOPs per image (from the cards: the student's does not change) and
images/s measured in the same run (noisy on a shared machine: read it as a ratio). Writes ``results.json`` and
``results.md`` into ``--out``. The held-out set is small (~50 images): differences under ~2 points are within
what another sample of the same size would move.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from spotdet import Detector
from spotdet.atomic import atomic_write_text
from spotdet.distill.api import DEFAULT_CONF, DEFAULT_FREEZE, DEFAULT_IGNORE_CONF, DEFAULT_SOFT
from spotdet.eval.coco import evaluate, load_dataset
from spotdet.vision.image_io import load_image
from spotdet.vision.preprocess import preprocess

DATA = Path("/work/shared/data")


def split(val_dir: Path, n_train: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(training images, held-out images) of coco-val-dev, by a seeded shuffle of its image list."""
    images = sorted(load_dataset(val_dir).images, key=lambda im: im["id"])
    random.Random(seed).shuffle(images)
    return images[:n_train], images[n_train:]


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


def score(model: Any, heldout: Path, label: str) -> dict[str, Any]:
    det = Detector(model, threads=None)
    report = evaluate(det, heldout)
    size = det.input_size()
    row = {"model": label, "map50_95": report.map50_95, "map50": report.map50, "input": f"{size[1]}x{size[0]}",
           "gflops": det.card.gflops, "images_per_s": report.images_per_s}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="yolo11n-int8", help="comma-separated for an ensemble")
    ap.add_argument("--student", default="yolox-nano")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--conf", type=float, default=DEFAULT_CONF)
    ap.add_argument("--ignore-conf", type=float, default=DEFAULT_IGNORE_CONF or 0.0, help="0: no ignore regions")
    ap.add_argument("--soft", action=argparse.BooleanOptionalAction, default=None,
                    help="teacher scores as targets (default: distill's)")
    ap.add_argument("--freeze", choices=("stem", "backbone"), default=None, help="default: distill's")
    ap.add_argument("--val-train", type=int, default=50, help="coco-val-dev images used (unlabelled) for training")
    ap.add_argument("--out", type=Path, default=Path("/tmp/spotdet-distill-bench"))
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    from spotdet.distill import distill
    from spotdet.distill.export import export_student
    from spotdet.models.ref import resolve_model

    val_dir, train_dir = DATA / "coco-val-dev", DATA / "coco128-train"
    val_train, val_held = split(val_dir, args.val_train)
    heldout = write_heldout(val_dir, val_held, args.out)
    train_list = write_train_list(train_dir, val_dir, val_train, args.out)
    teachers = args.teacher.split(",")
    rows = [score(t, heldout, f"teacher {t}") for t in teachers]
    rows.append(score(args.student, heldout, f"student {args.student} before"))
    student = resolve_model(args.student)
    curve: list[dict[str, Any]] = []
    first = Path(train_list.read_text().split()[0])
    probe = preprocess(load_image(first, exif_orientation=False)[0], tuple(student.card.input_size),
                       student.card.preprocess)[0]

    def after_epoch(stats, module) -> None:
        path = args.out / "epochs" / f"epoch-{stats.epoch}.onnx"
        export_student(student.card, student.path, module, path, f"{args.student}-epoch{stats.epoch}",
                       "benchmark epoch", probe)
        module.train()
        row = score(path, heldout, f"epoch {stats.epoch}")
        curve.append({**row, "loss": round(stats.loss, 4), "epoch_seconds": round(stats.seconds, 1),
                      "images": stats.images})

    soft = DEFAULT_SOFT if args.soft is None else args.soft
    freeze = args.freeze or DEFAULT_FREEZE
    started = time.monotonic()
    result = distill(teachers, args.student, train_list, args.out / "run", epochs=args.epochs, lr=args.lr,
                     conf=args.conf, ignore_conf=args.ignore_conf or None, resume=args.resume,
                     soft=soft, freeze=freeze, on_epoch=after_epoch)
    seconds = time.monotonic() - started
    rows.append(score(result.model_path, heldout, f"student {args.student} after {args.epochs} epochs"))
    summary = {"teachers": teachers, "student": args.student, "train_images": result.labelled_images,
               "pseudo_labels": result.labels, "heldout_images": len(val_held), "epochs": args.epochs,
               "lr": args.lr, "conf": args.conf, "ignore_conf": args.ignore_conf, "soft": soft, "freeze": freeze,
               "distill_seconds": round(seconds, 1), "rows": rows, "curve": curve}
    atomic_write_text(args.out / "results.json", json.dumps(summary, indent=2))
    lines = ["| model | mAP@0.5:0.95 | mAP@0.5 | input | GFLOPs | images/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['map50_95']:.2f} | {r['map50']:.2f} | {r['input']} | {r['gflops']} | "
              f"{r['images_per_s']:.1f} |" for r in rows]
    lines += ["", "| epoch | loss | held-out mAP@0.5:0.95 | epoch seconds |", "|---|---|---|---|"]
    lines += [f"| {c['model']} | {c['loss']} | {c['map50_95']:.2f} | {c['epoch_seconds']} |" for c in curve]
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"distill took {seconds:.0f} s ({result.labelled_images} images, {result.labels} pseudo-labels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
