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


def test_more_than_max_candidates_keeps_nms_of_the_top_scores_mapped_back_to_input_indices():
    # Above MAX_CANDIDATES the function keeps only the top-MAX_CANDIDATES boxes by score, runs NMS on them
    # and maps the kept indices back to the caller's array. To keep the reference cheap, most boxes come in
    # tight clusters (one class each, so each cluster collapses to one box) and the rest are spread out.
    from spotdet.postprocess.nms import MAX_CANDIDATES

    rng = np.random.default_rng(123)
    n_clusters, per_cluster, n_spread = 400, 90, 4000
    n = n_clusters * per_cluster + n_spread
    assert n > MAX_CANDIDATES + 5000
    centres = rng.uniform(0, 5000, (n_clusters, 2)).repeat(per_cluster, 0)
    cluster_wh = rng.uniform(30, 60, (n_clusters, 2)).repeat(per_cluster, 0)
    xy = np.concatenate([centres + rng.uniform(-2, 2, centres.shape), rng.uniform(0, 5000, (n_spread, 2))])
    wh = np.concatenate([cluster_wh + rng.uniform(-2, 2, cluster_wh.shape), rng.uniform(10, 60, (n_spread, 2))])
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    classes = np.concatenate([rng.integers(0, 5, n_clusters).repeat(per_cluster), rng.integers(0, 5, n_spread)])
    scores = rng.permutation(np.linspace(0.01, 0.99, n)).astype(np.float32)  # distinct scores
    order = rng.permutation(n)  # interleave clusters and spread boxes in the input
    boxes, classes, scores = boxes[order], classes[order], scores[order]

    top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    ref_local = reference_nms(boxes[top], scores[top], classes[top], 0.5)
    ref = top[ref_local]
    # Meaningful only if the mapping is not the identity and some dropped low-score box would have survived.
    assert (ref_local != ref).any() and len(ref) > n_clusters
    assert len(reference_nms(boxes, scores, classes, 0.5)) > len(ref)  # NMS of all n keeps more

    got = class_aware_nms(boxes, scores, classes, 0.5, n)
    assert len(got) == len(ref)
    assert np.isin(got, top).all(), "a box outside the top candidates by score was kept"
    np.testing.assert_array_equal(scores[got], scores[ref])
    np.testing.assert_array_equal(boxes[got], boxes[ref])
    np.testing.assert_array_equal(classes[got], classes[ref])

    got = class_aware_nms(boxes, scores, classes, 0.5, 300)  # max_det still applies after the mapping
    np.testing.assert_array_equal(scores[got], scores[ref[:300]])
    np.testing.assert_array_equal(boxes[got], boxes[ref[:300]])
