"""Per-family decoders: raw network outputs (one image) -> candidate boxes in input-tensor pixels.

Each decoder takes the list of output arrays for ONE image (batch dimension removed), the input size
(h, w), the score threshold and the card's decoder parameters, and returns
``(boxes_xyxy float32 (N,4), scores float32 (N,), class_ids int (N,))`` for candidates above threshold.
Adding a model family means adding one function here and registering it in DECODERS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]
Decoder = Callable[[list[np.ndarray], tuple[int, int], float, dict], Candidates]


def _best_class(class_scores: np.ndarray, boxes: np.ndarray, conf: float) -> Candidates:
    """Keep each cell's best class when its score passes ``conf``."""
    cls = class_scores.argmax(1)
    scores = class_scores[np.arange(len(cls)), cls]
    keep = scores > conf
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), cls[keep]


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def decode_ultralytics(outputs: list[np.ndarray], input_hw: tuple[int, int], conf: float, params: dict) -> Candidates:
    """Ultralytics YOLOv5u/v8/11: [4+C, N] with cx,cy,w,h in input pixels and C class scores (no objectness)."""
    pred = outputs[0]
    scores_all = pred[4:].T
    best = scores_all.max(1)
    keep = best > conf
    return _best_class(scores_all[keep], cxcywh_to_xyxy(pred[:4, keep].T), conf)


@lru_cache(maxsize=16)
def yolox_grid(input_hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(cells (N, 2) as x, y; strides (N, 1)) of an anchor-free head, stride by stride, row-major: the row
    order of YOLOX's output (also read cell by cell by ``distill.dense``)."""
    grids, stride_col = [], []
    for s in strides:
        gh, gw = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        stride_col.append(np.full((gh * gw, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(stride_col).astype(np.float32)


def decode_yolox(outputs: list[np.ndarray], input_hw: tuple[int, int], conf: float, params: dict) -> Candidates:
    """YOLOX (export without decode): [N, 5+C] = x,y offsets, log w,h, obj, C class probabilities."""
    pred = outputs[0]
    grid, strides = yolox_grid(tuple(input_hw), tuple(params.get("strides", (8, 16, 32))))
    if len(grid) != len(pred):
        raise ValueError(f"YOLOX output has {len(pred)} rows, expected {len(grid)} for input {input_hw}")
    keep = pred[:, 4] * pred[:, 5:].max(1) > conf
    pred, grid, strides = pred[keep], grid[keep], strides[keep]
    xy = (pred[:, :2] + grid) * strides
    wh = np.exp(pred[:, 2:4]) * strides
    boxes = cxcywh_to_xyxy(np.concatenate([xy, wh], 1))
    return _best_class(pred[:, 4:5] * pred[:, 5:], boxes, conf)


def decode_fastestdet(outputs: list[np.ndarray], input_hw: tuple[int, int], conf: float, params: dict) -> Candidates:
    """FastestDet: [5+C, H, W] = obj, tx, ty, tw, th, C class probabilities; boxes as image fractions."""
    pred = outputs[0]
    _, gh, gw = pred.shape
    flat = pred.reshape(pred.shape[0], -1).T  # (H*W, 5+C)
    class_scores = flat[:, :1] ** 0.6 * flat[:, 5:] ** 0.4
    keep = class_scores.max(1) > conf
    flat, class_scores = flat[keep], class_scores[keep]
    cell = np.flatnonzero(keep)
    gy, gx = cell // gw, cell % gw
    cx = (gx + np.tanh(flat[:, 1])) / gw * input_hw[1]
    cy = (gy + np.tanh(flat[:, 2])) / gh * input_hw[0]
    w = 1.0 / (1.0 + np.exp(-flat[:, 3])) * input_hw[1]
    h = 1.0 / (1.0 + np.exp(-flat[:, 4])) * input_hw[0]
    return _best_class(class_scores, cxcywh_to_xyxy(np.stack([cx, cy, w, h], 1)), conf)


@lru_cache(maxsize=16)
def _gfl_centres(input_hw: tuple[int, int], stride: int) -> np.ndarray:
    gh, gw = -(-input_hw[0] // stride), -(-input_hw[1] // stride)
    xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
    return ((np.stack([xv, yv], -1).reshape(-1, 2) + 0.5) * stride).astype(np.float32)


def decode_picodet(outputs: list[np.ndarray], input_hw: tuple[int, int], conf: float, params: dict) -> Candidates:
    """PP-PicoDet / GFL: per stride a score map [N, C] (sigmoid) and a box map [N, 4*(reg_max+1)].

    Each side's distance is the expectation of a softmax over reg_max+1 bins, times the stride,
    measured from the cell centre.
    """
    strides = params.get("strides", (8, 16, 32, 64))
    bins = params.get("reg_max", 7) + 1
    n = len(strides)
    score_maps, box_maps = outputs[:n], outputs[n:]
    all_boxes, all_scores, all_cls = [], [], []
    project = np.arange(bins, dtype=np.float32)
    for stride, scores, dist in zip(strides, score_maps, box_maps):
        keep = scores.max(1) > conf
        if not keep.any():
            continue
        logits = dist[keep].reshape(-1, 4, bins)
        logits = np.exp(logits - logits.max(-1, keepdims=True))
        distance = (logits / logits.sum(-1, keepdims=True)) @ project * stride  # (k, 4): l, t, r, b
        centres = _gfl_centres(tuple(input_hw), stride)[keep]
        boxes = np.concatenate([centres - distance[:, :2], centres + distance[:, 2:]], 1)
        b, s, c = _best_class(scores[keep], boxes, conf)
        all_boxes.append(b), all_scores.append(s), all_cls.append(c)
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_cls)


DECODERS: dict[str, Decoder] = {
    "ultralytics": decode_ultralytics,
    "yolox": decode_yolox,
    "fastestdet": decode_fastestdet,
    "picodet": decode_picodet,
}


def get_decoder(family: str) -> Decoder:
    try:
        return DECODERS[family]
    except KeyError:
        raise KeyError(f"no decoder for family {family!r}; known: {', '.join(DECODERS)}") from None
