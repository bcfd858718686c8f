"""Detection results: boxes in original image pixels, class names, per-stage timings, drawing, serialisation.

``Result`` is the only serialiser of detections. The CLI's ``--json``, the HTTP service, batch jobs and COCO
evaluation all call ``to_dict`` / ``to_coco`` and only add keys of their own (queue time, cost, index), so
the same image gives the same keys everywhere. Timing keys carry their unit: ``decode_ms``,
``preprocess_ms``, ``infer_ms``, ``postprocess_ms`` and ``total_ms`` (the time from input to result as seen
by whoever asked: the sum of the stages in Python; the whole request, queue included, over HTTP).

Other ecosystems read a Result without copying by hand: ``to_supervision`` builds a ``supervision.Detections``,
and ``supervision.Detections.from_ultralytics(result)`` works on it too, because a Result has the attributes
that method reads from an Ultralytics result (``boxes.xyxy/conf/cls/id``, ``names``, ``masks``) as numpy
arrays. ``save_txt`` writes the YOLO label format.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import cv2
import numpy as np

from spotdet.errors import UsageError
from spotdet.vision.draw import draw_detections

STAGES = ("decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms")
TIMING_KEYS = (*STAGES, "total_ms")


@dataclass
class Boxes:
    """Detections of one image: ``xyxy`` (N,4) float32 pixels, ``conf`` (N,), ``cls`` (N,) int."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    #: tracker ids: spotdet does not track, so always None (``Detections.from_ultralytics`` reads it)
    id: ClassVar[None] = None

    @classmethod
    def empty(cls) -> "Boxes":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @property
    def xywh(self) -> np.ndarray:
        """Centre x, centre y, width, height."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([self.xyxy[:, :2] + wh / 2, wh], 1)

    def xywhn(self, shape: tuple[int, int]) -> np.ndarray:
        """``xywh`` as fractions of the image ``shape`` (height, width): the YOLO label coordinates."""
        h, w = shape
        return self.xywh / np.array([w, h, w, h], np.float32)

    def __len__(self) -> int:
        return len(self.conf)


@dataclass
class Result:
    """One image's detections. ``timings`` holds milliseconds per stage, keyed as in ``TIMING_KEYS``."""

    boxes: Boxes
    names: dict[int, str]
    orig_shape: tuple[int, int]  # (height, width)
    orig_img: np.ndarray | None = None
    path: str | None = None
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. an out-of-memory fallback that was applied
    batch_size: int = 1  # images in the model run that produced this result
    input_size: tuple[int, int] | None = None  # (h, w) the network ran at (the first pass when there were more)
    #: every network pass this image took, (h, w) each: tiles plus the whole image, or the small pass and an
    #: escalation under imgsz="auto"; empty means the one pass at ``input_size``
    input_sizes: list[tuple[int, int]] = field(default_factory=list)
    frame: int | None = None  # the frame number when ``path`` is a video
    #: instance masks: detection only, so always None (``Detections.from_ultralytics`` reads it)
    masks: ClassVar[None] = None

    @property
    def passes(self) -> list[tuple[int, int]]:
        """The (h, w) of every network pass this image took."""
        return list(self.input_sizes) or ([tuple(self.input_size)] if self.input_size else [])

    @property
    def input_pixels(self) -> int:
        """Network input pixels spent on this image, all passes counted: the cost measure that has no timing
        noise (a conv net's work is close to proportional to it)."""
        return int(sum(h * w for h, w in self.passes))

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

    def timings_ms(self) -> dict[str, float]:
        """The stage timings, rounded, in ``TIMING_KEYS`` order."""
        return {k: round(self.timings[k], 3) for k in TIMING_KEYS if k in self.timings}

    def to_dict(self) -> dict[str, Any]:
        """The one JSON shape of a result; sinks add their own keys beside these, never rebuild them."""
        return {
            "path": self.path,
            **({"frame": self.frame} if self.frame is not None else {}),
            "model": self.model,
            "width": self.orig_shape[1],
            "height": self.orig_shape[0],
            "input_size": list(self.input_size) if self.input_size else None,
            "input_sizes": [list(hw) for hw in self.passes],
            "input_pixels": self.input_pixels,
            "batch_size": self.batch_size,
            "detections": self.detections(),
            "timings": self.timings_ms(),
            **({"notes": self.notes} if self.notes else {}),
        }

    def summary(self) -> str:
        """Detections counted by class, most frequent first: ``"2 person, 1 dog"`` (``"no detections"``)."""
        counts = Counter(self.names.get(int(c), str(int(c))) for c in self.boxes.cls.tolist())
        return ", ".join(f"{n} {name}" for name, n in counts.most_common()) or "no detections"

    def __repr__(self) -> str:
        where = "" if self.path is None else f" {self.path}" + ("" if self.frame is None else f" frame {self.frame}")
        total = self.timings.get("total_ms")
        ms = "" if total is None else f", {total:.1f} ms"
        return (f"<Result{where}: {self.model or 'model?'}, {self.orig_shape[1]}x{self.orig_shape[0]}, "
                f"{len(self)} detection(s) ({self.summary()}){ms}>")

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_coco(self, image_id: int, category_ids: Mapping[int, int]) -> list[dict[str, Any]]:
        """COCO results-format entries (xywh boxes); classes without a category id are left out."""
        out = []
        for (x1, y1, x2, y2), score, cls in zip(self.boxes.xyxy.tolist(), self.boxes.conf.tolist(),
                                                self.boxes.cls.tolist()):
            if int(cls) in category_ids:
                out.append({"image_id": image_id, "category_id": category_ids[int(cls)],
                            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                            "score": round(float(score), 5)})
        return out

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` (xyxy, confidence, class_id, ``data["class_name"]``) of this result.

        Needs the supervision extra (``pip install 'spotdet[supervision]'``); the arrays are copies, so the
        Detections can be changed freely."""
        from spotdet.extras import require

        require("supervision", "Result.to_supervision")
        import supervision as sv

        class_id = self.boxes.cls.astype(int)
        return sv.Detections(xyxy=self.boxes.xyxy.astype(np.float32), confidence=self.boxes.conf.astype(np.float32),
                             class_id=class_id,
                             data={"class_name": np.array([self.names.get(int(c), str(int(c))) for c in class_id],
                                                          dtype=str)})

    def save_txt(self, path: str | Path, save_conf: bool = False) -> Path:
        """Write the detections as YOLO labels: one ``class cx cy w h`` line each (``conf`` appended with
        ``save_conf``), coordinates as fractions of the image. An image without detections gets an empty file
        (a negative example in a YOLO dataset, not a missing label)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = np.concatenate([self.boxes.cls.reshape(-1, 1).astype(np.float64),
                               self.boxes.xywhn(self.orig_shape).astype(np.float64),
                               *([self.boxes.conf.reshape(-1, 1).astype(np.float64)] if save_conf else [])], 1)
        path.write_text("".join(" ".join(f"{v:g}" for v in (int(row[0]), *row[1:])) + "\n" for row in rows))
        return path

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
