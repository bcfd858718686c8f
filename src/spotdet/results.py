"""Detection results: boxes in original image pixels, class names, per-stage timings, drawing and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spotdet.errors import UsageError
from spotdet.vision.draw import draw_detections


@dataclass
class Boxes:
    """Detections of one image: ``xyxy`` (N,4) float32 pixels, ``conf`` (N,), ``cls`` (N,) int."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray

    @classmethod
    def empty(cls) -> "Boxes":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @property
    def xywh(self) -> np.ndarray:
        """Centre x, centre y, width, height."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([self.xyxy[:, :2] + wh / 2, wh], 1)

    def __len__(self) -> int:
        return len(self.conf)


@dataclass
class Result:
    """One image's detections. ``timings`` holds milliseconds per stage: decode, preprocess, infer, postprocess."""

    boxes: Boxes
    names: dict[int, str]
    orig_shape: tuple[int, int]  # (height, width)
    orig_img: np.ndarray | None = None
    path: str | None = None
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. an out-of-memory fallback that was applied
    batch_size: int = 1  # images in the session.run that produced this result

    def __len__(self) -> int:
        return len(self.boxes)

    def detections(self) -> list[dict[str, Any]]:
        """One dict per detection: class_id, class_name, confidence, box {x1,y1,x2,y2}."""
        out = []
        for (x1, y1, x2, y2), score, cid in zip(self.boxes.xyxy.tolist(), self.boxes.conf.tolist(),
                                                self.boxes.cls.tolist()):
            out.append({
                "class_id": int(cid),
                "class_name": self.names.get(int(cid), str(cid)),
                "confidence": round(float(score), 5),
                "box": {"x1": round(x1, 2), "y1": round(y1, 2), "x2": round(x2, 2), "y2": round(y2, 2)},
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "width": self.orig_shape[1],
            "height": self.orig_shape[0],
            "detections": self.detections(),
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
            **({"notes": self.notes} if self.notes else {}),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self) -> np.ndarray:
        """A copy of the original image with boxes, class names and scores drawn (BGR)."""
        if self.orig_img is None:
            raise UsageError("this result does not keep its image; cannot draw it")
        return draw_detections(self.orig_img, self.boxes.xyxy, self.boxes.conf, self.boxes.cls, self.names)

    def save(self, path: str | Path) -> Path:
        """Write the annotated image; the format follows the extension (.jpg, .png, ...)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ext = path.suffix or ".jpg"
        ok, buf = cv2.imencode(ext, self.plot())
        if not ok:
            raise UsageError(f"cannot encode an image with extension {ext!r}; use .jpg or .png")
        path.write_bytes(buf.tobytes())
        return path
