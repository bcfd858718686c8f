"""What a model is timed on (decoded images: given files, a COCO folder's images, or a synthetic card) and
which sizes / batches to time (``--imgsz`` / ``--batch`` lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from spotdet.errors import UsageError
from spotdet.vision.sources import list_images

TIMING_IMAGES = 8


def synthetic_image(seed: int = 0, h: int = 480, w: int = 640) -> np.ndarray:
    """A deterministic 640x480 BGR test card (gradients + shapes) for timing when no images are given."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1).astype(np.uint8)
    for _ in range(12):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(30, 200)), y + int(rng.integers(30, 200))), color, -1)
    return img


def timing_images(data: str | Path | None = None, images: Iterable[str | Path] | None = None,
                  count: int = TIMING_IMAGES) -> tuple[list[np.ndarray], str]:
    """Decoded images to time on (from ``images``, else ``data``'s images, else a synthetic card) + a label."""
    from spotdet.vision.image_io import load_image

    paths: list[Path] = []
    if images:
        for item in images:
            p = Path(item)
            paths.extend(list_images(p) if p.is_dir() else [p])
        label = "given images"
    elif data is not None:
        from spotdet.eval.coco import find_dataset

        _, image_dir = find_dataset(data)
        paths = list_images(image_dir)
        label = f"images from {data}"
    else:
        return [synthetic_image(i) for i in range(2)], "synthetic 640x480 test card (no --data/--images)"
    decoded = [load_image(str(p), exif_orientation=False)[0] for p in paths[:count]]
    if not decoded:
        raise UsageError(f"no images found to time on ({label})")
    shapes = {f"{im.shape[1]}x{im.shape[0]}" for im in decoded}
    return decoded, f"{len(decoded)} {label} ({', '.join(sorted(shapes))})"


def parse_sizes(text: str | None, name: str) -> list[int] | None:
    """``"320,416,640"`` -> [320, 416, 640]; None stays None (the model's native size / batch 1)."""
    if text is None or not str(text).strip():
        return None
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{name} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--{name} values must be positive integers, got {text!r}")
    return sorted(set(values))
