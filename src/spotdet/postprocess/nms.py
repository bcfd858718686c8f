"""Class-aware non-maximum suppression (OpenCV's batched NMS) and the final top-k."""

from __future__ import annotations

import cv2
import numpy as np

MAX_CANDIDATES = 30000


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float,
                    max_det: int) -> np.ndarray:
    """Indices of kept boxes, highest score first; boxes of different classes never suppress each other."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if len(boxes) > MAX_CANDIDATES:
        top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
        boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
    else:
        top = None
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    # top_k is not passed: OpenCV applies it to the candidates before suppression, not to the survivors.
    keep = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64), scores.astype(np.float32),
                                   class_ids.astype(np.int32), 0.0, float(iou))
    keep = np.asarray(keep, np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_det]
    return keep if top is None else top[keep]
