"""A large-image COCO set built reproducibly from coco-val-dev: 3x3 COCO images per 1920x1440 mosaic.

    python benchmarks/mosaic.py [--data ../shared/data/coco-val-dev] [--out /tmp/spotdet-mosaic] [--seed 0]

Why: coco-val-dev's photos are about the size of a network input, so they cannot show what tiling is for
(small objects in a large image). Packing nine of them into one 1920x1440 image makes every object about a
third of its size relative to the frame: a whole-image pass at 416 sees them shrunk 4.6x.

How: images are shuffled with ``--seed`` and taken nine at a time (the remainder, 103 mod 9 = 4 images, is left
out); each is scaled to fit its 640x480 cell (aspect kept, never enlarged), centred, on grey (114); each
annotation's box is scaled and shifted the same way, its area scaled by the square of the scale, iscrowd and
category kept (segmentations are dropped: only boxes are scored). The output is a COCO folder
(``instances.json`` + ``images/``) readable by ``spotdet eval`` and ``spotdet.eval.coco``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spotdet.atomic import atomic_write_text
from spotdet.eval.coco import load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPOTDET_SHARED", REPO.parent / "shared"))
PAD = 114


def cell_placement(w: int, h: int, cell_w: int, cell_h: int) -> tuple[float, int, int]:
    """(scale, x offset, y offset) that fits a w x h image centred in a cell, never enlarging it."""
    s = min(1.0, cell_w / w, cell_h / h)
    nw, nh = round(w * s), round(h * s)
    return s, (cell_w - nw) // 2, (cell_h - nh) // 2


def moved_annotation(ann: dict[str, Any], s: float, ox: int, oy: int, image_id: int, ann_id: int) -> dict[str, Any]:
    """An annotation of a placed image, in mosaic pixels."""
    x, y, w, h = ann["bbox"]
    return {"id": ann_id, "image_id": image_id, "category_id": ann["category_id"],
            "bbox": [round(x * s + ox, 2), round(y * s + oy, 2), round(w * s, 2), round(h * s, 2)],
            "area": round(float(ann["area"]) * s * s, 2), "iscrowd": int(ann.get("iscrowd", 0))}


def build(data: Path, out: Path, grid: int = 3, width: int = 1920, height: int = 1440, seed: int = 0) -> Path:
    """Write the mosaic set to ``out``; returns its annotation file."""
    ds = load_dataset(data)
    images = sorted(ds.images, key=lambda i: i["id"])
    order = np.random.default_rng(seed).permutation(len(images))
    per = grid * grid
    cell_w, cell_h = width // grid, height // grid
    by_image: dict[int, list[dict]] = {}
    for ann in ds.data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    (out / "images").mkdir(parents=True, exist_ok=True)
    out_images, out_anns = [], []
    for m in range(len(images) // per):
        canvas = np.full((height, width, 3), PAD, np.uint8)
        mosaic_id = m + 1
        for k, idx in enumerate(order[m * per:(m + 1) * per]):
            info = images[int(idx)]
            img = cv2.imread(str(ds.image_dir / info["file_name"]), cv2.IMREAD_COLOR)
            h, w = img.shape[:2]
            s, dx, dy = cell_placement(w, h, cell_w, cell_h)
            ox, oy = (k % grid) * cell_w + dx, (k // grid) * cell_h + dy
            small = img if s == 1.0 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
            for ann in by_image.get(info["id"], []):
                out_anns.append(moved_annotation(ann, s, ox, oy, mosaic_id, len(out_anns) + 1))
        name = f"mosaic_{mosaic_id:03d}.jpg"
        cv2.imwrite(str(out / "images" / name), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out_images.append({"id": mosaic_id, "file_name": name, "width": width, "height": height})
    meta = {"images": out_images, "categories": ds.categories, "annotations": out_anns,
            "info": {"description": f"{grid}x{grid} mosaics of {data.name}, seed {seed}"}}
    return atomic_write_text(out / "instances.json", json.dumps(meta))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "coco-val-dev")
    ap.add_argument("--out", type=Path, default=Path("/tmp/spotdet-mosaic"))
    ap.add_argument("--grid", type=int, default=3)
    ap.add_argument("--size", default="1920x1440", help="WxH of a mosaic")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    ann = build(args.data, args.out, args.grid, w, h, args.seed)
    meta = json.loads(ann.read_text())
    print(f"{len(meta['images'])} mosaics ({w}x{h}), {len(meta['annotations'])} boxes -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
