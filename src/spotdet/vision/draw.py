"""Drawing detections on an image."""

from __future__ import annotations

import cv2
import numpy as np


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 200, 230]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(img: np.ndarray, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    names: dict[int, str]) -> np.ndarray:
    out = img.copy()
    thickness = max(1, round(sum(out.shape[:2]) / 600))
    font_scale = max(0.4, thickness / 3)
    for (x1, y1, x2, y2), score, cid in zip(boxes.astype(int), scores, class_ids):
        color = class_color(int(cid))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = f"{names.get(int(cid), cid)} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
        top = y1 - th - base if y1 - th - base >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), color, -1)
        cv2.putText(out, label, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                    max(1, thickness - 1), cv2.LINE_AA)
    return out
