"""Calibration images for static INT8: the user's own images, fed with the model's own preprocessing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from spotdet.errors import ImageLoadError
from spotdet.models.card import ModelCard
from spotdet.optimize.errors import CalibrationError
from spotdet.vision.image_io import load_image
from spotdet.vision.sources import IMAGE_EXTENSIONS, list_images
from spotdet.vision.preprocess import preprocess

log = logging.getLogger(__name__)

DEFAULT_COUNT = 100


def calibration_images(folder: str | Path, count: int = DEFAULT_COUNT) -> list[Path]:
    """Up to ``count`` image files under ``folder`` (recursively), spread evenly over the sorted list."""
    root = Path(folder)
    if not root.exists():
        raise CalibrationError(f"calibration folder {root}: no such directory")
    if not root.is_dir():
        raise CalibrationError(f"calibration folder {root}: not a directory")
    if count < 1:
        raise CalibrationError(f"calibration image count must be >= 1, got {count}")
    files = list_images(root)
    if not files:
        raise CalibrationError(f"calibration folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                               "pass --calib with a folder of images like the ones you will run on")
    if len(files) > count:
        idx = np.linspace(0, len(files) - 1, count).round().astype(int)
        files = [files[i] for i in sorted(set(idx.tolist()))]
    return files


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds one preprocessed image per ``get_next``; unreadable files are skipped with a warning.

    Images are decoded up front (so a folder of broken files fails before calibration starts) and kept as
    input tensors; for a few hundred images at 416x416 that is ~2 MB each. ``set_range`` lets ONNX
    Runtime calibrate in strides so it never holds every image's activations at once.
    """

    def __init__(self, files: list[Path], card: ModelCard, input_name: str,
                 on_image: Callable[[], None] | None = None) -> None:
        size = tuple(card.input_size)
        self.input_name = input_name
        self.skipped: list[str] = []
        self.tensors: list[np.ndarray] = []
        for path in files:
            try:
                img, _ = load_image(path, exif_orientation=False)
            except ImageLoadError as exc:
                self.skipped.append(str(exc))
                log.warning("calibration: skipped %s", exc)
                continue
            self.tensors.append(preprocess(img, size, card.preprocess)[0])
        if not self.tensors:
            first = f"; first error: {self.skipped[0]}" if self.skipped else ""
            raise CalibrationError(f"none of the {len(files)} calibration files could be read as an image{first}")
        self.on_image = on_image
        self.set_range(0, len(self.tensors))

    def __len__(self) -> int:
        return len(self.tensors)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(range(start_index, min(end_index, len(self.tensors))))

    def get_next(self) -> dict[str, np.ndarray] | None:
        i = next(self._iter, None)
        if i is None:
            return None
        if self.on_image:
            self.on_image()
        return {self.input_name: self.tensors[i]}

    def stride(self, at_most: int = 10) -> int:
        """The largest divisor of the image count that is <= ``at_most`` (ORT needs an exact division)."""
        n = len(self.tensors)
        return max(d for d in range(1, min(at_most, n) + 1) if n % d == 0)
