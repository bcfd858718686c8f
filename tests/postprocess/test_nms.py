"""Class-aware NMS checked against a plain reference implementation on random boxes."""

import numpy as np
import pytest

from spotdet.postprocess.nms import class_aware_nms


def iou_one(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0]); y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2]); y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(boxes) - inter)


def reference_nms(boxes, scores, classes, thr):
    keep = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        while len(idx):
            keep.append(idx[0])
            idx = idx[1:][iou_one(boxes[idx[0]], boxes[idx[1:]]) <= thr]
    keep = np.array(keep, int)
    return keep[np.argsort(-scores[keep], kind="stable")]


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 300
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(np.linspace(0.01, 0.99, n)).astype(np.float32)  # distinct scores
    classes = rng.integers(0, 4, n)
    got = class_aware_nms(boxes, scores, classes, 0.5, 1000)
    assert got.tolist() == reference_nms(boxes, scores, classes, 0.5).tolist()


def test_classes_do_not_suppress_each_other_and_max_det_applies_after_nms():
    boxes = np.array([[0, 0, 10, 10]] * 3 + [[100, 100, 110, 110]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert class_aware_nms(boxes, scores, classes, 0.5, 10).tolist() == [0, 2, 3]
    assert class_aware_nms(boxes, scores, classes, 0.5, 2).tolist() == [0, 2]
