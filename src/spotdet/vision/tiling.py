"""Sliced inference geometry and merge: where the tiles of a large image lie, and how their boxes become one set.

A detector that squeezes a 4000x3000 photo into 416x416 shrinks a 40-pixel object to 4 pixels, below what it
can resolve. Tiling runs the network on overlapping crops at (about) their own scale instead, plus one pass on
the whole image for the objects larger than a tile, and merges the boxes.

What is copied from SAHI (``sahi.slicing.get_slice_bboxes`` and ``sahi.postprocess.combine``), so results can
be compared one to one:

- windows: start at 0 and step by ``tile - int(overlap * tile)``; the last window of a row or column is moved
  back to end at the image edge instead of running past it (no padding, no tile smaller than needed);
- merge ``"greedy_nmm"`` (SAHI's default ``GREEDYNMM`` with ``IOS`` 0.5, class-aware): boxes are taken by
  score; each one absorbs the lower-scored boxes of its class whose intersection over the *smaller* box's area
  reaches the threshold, and becomes their union with the best score. Why merging and not suppression: an
  object cut by a tile border is seen as a part in one tile and whole in another (or in the whole-image pass);
  NMS keeps the higher-scored of the two, which may be the part; intersection over the smaller box catches a
  part inside a whole, where IoU is small.
- merge ``"nms"``: plain class-aware NMS (``postprocess.nms``) at the threshold as IoU.
- merge ``"auto"`` (the default): ``greedy_nmm`` when the confidence threshold is at least 0.1, ``nms`` below
  it, as SAHI's ``get_sliced_prediction`` switches (``LOW_MODEL_CONFIDENCE``): with hundreds of low-score
  candidates (mAP evaluation runs at 0.001) a high-score box absorbs loose low-score neighbours and grows past
  its object, which costs more localisation than merging cut objects gains (benchmarks/tiling.py measures both).

Everything here is pure numpy on boxes in original-image pixels (x1, y1, x2, y2); the Detector does the passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spotdet.errors import UsageError
from spotdet.postprocess.nms import class_aware_nms

MERGES = ("auto", "greedy_nmm", "nms")
LOW_CONF = 0.1  # below this confidence threshold "auto" merges by NMS (SAHI's LOW_MODEL_CONFIDENCE)


@dataclass(frozen=True)
class TilePolicy:
    """How ``tile=True`` slices and merges (set ``Detector.tile_policy``; same for every call of a detector).

    ``size``: tile (h, w) in original-image pixels; None = the network input, so a tile runs at scale 1.
    ``overlap``: fraction of a tile shared with its neighbour (SAHI's default 0.2): an object narrower than
    ``overlap * size`` lies whole in at least one tile. ``merge``: ``"auto"``, ``"greedy_nmm"`` or ``"nms"``;
    ``match_threshold``: its intersection-over-smaller (greedy_nmm) or IoU (nms) threshold.
    ``whole_image``: also run the whole image at the network input, for objects larger than a tile.
    """

    size: tuple[int, int] | None = None
    overlap: float = 0.2
    merge: str = "auto"
    match_threshold: float = 0.5
    whole_image: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise UsageError(f"tile overlap must be in [0, 1), got {self.overlap}")
        if self.merge not in MERGES:
            raise UsageError(f"tile merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if not 0.0 < self.match_threshold <= 1.0:
            raise UsageError(f"tile match_threshold must be in (0, 1], got {self.match_threshold}")
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < 1:
                raise UsageError(f"tile size must be (h, w) of positive integers, got {self.size!r}")
            object.__setattr__(self, "size", size)


def merge_method(merge: str, conf: float) -> str:
    """The merge ``"auto"`` stands for at confidence threshold ``conf``; others as given."""
    if merge == "auto":
        return "greedy_nmm" if conf >= LOW_CONF else "nms"
    return merge


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis (SAHI's stepping; the last window ends at the edge)."""
    if length <= tile:
        return [0]
    step = max(1, tile - int(overlap * tile))
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_windows(height: int, width: int, tile_hw: tuple[int, int], overlap: float) -> np.ndarray:
    """(N, 4) int windows ``x0, y0, x1, y1`` covering the image, row by row; one window when it fits a tile."""
    th, tw = tile_hw
    rows = [(y, min(height, y + th)) for y in axis_starts(height, th, overlap)]
    cols = [(x, min(width, x + tw)) for x in axis_starts(width, tw, overlap)]
    return np.array([(x0, y0, x1, y1) for y0, y1 in rows for x0, x1 in cols], np.int64).reshape(-1, 4)


def needs_tiles(height: int, width: int, tile_hw: tuple[int, int]) -> bool:
    """Whether an image is larger than one tile (smaller images take only the whole-image pass)."""
    return height > tile_hw[0] or width > tile_hw[1]


def shift_boxes(boxes_xyxy: np.ndarray, origin_xy: tuple[int, int]) -> np.ndarray:
    """Boxes found in a tile, moved to the whole image's pixels (the tile's top-left is ``origin_xy``)."""
    x0, y0 = origin_xy
    return (np.asarray(boxes_xyxy, np.float32) + np.array([x0, y0, x0, y0], np.float32)).astype(np.float32)


def intersection_over_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection area of ``box`` with each of ``others`` over the smaller of the two areas (SAHI's IOS)."""
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    smaller = np.minimum(area, areas)
    return np.divide(iw * ih, smaller, out=np.zeros_like(smaller, dtype=np.float64), where=smaller > 0)


def greedy_nmm(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[tuple[int, list[int]]]:
    """SAHI's greedy non-maximum merging for one class: [(kept index, indices merged into it)], best first.

    The highest-scored remaining box takes every remaining box whose intersection over the smaller area
    reaches ``threshold``; those leave the pool; repeat.
    """
    order = list(np.argsort(-scores, kind="stable"))
    groups: list[tuple[int, list[int]]] = []
    while order:
        best, rest = order[0], np.asarray(order[1:], np.int64)
        if len(rest) == 0:
            groups.append((int(best), []))
            break
        matched = intersection_over_smaller(boxes[best], boxes[rest]) >= threshold
        groups.append((int(best), rest[matched].tolist()))
        order = rest[~matched].tolist()
    return groups


def _merge_group(boxes: np.ndarray, keep: int, members: list[int], threshold: float) -> np.ndarray:
    """The kept box grown to the union with each member that still matches it (as SAHI re-checks each pair)."""
    box = boxes[keep].astype(np.float64).copy()
    for m in members:
        if intersection_over_smaller(box, boxes[m:m + 1].astype(np.float64))[0] >= threshold:
            box[:2] = np.minimum(box[:2], boxes[m, :2])
            box[2:] = np.maximum(box[2:], boxes[m, 2:])
    return box


def merge_detections(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, merge: str, threshold: float,
                     max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes from every pass (whole-image pixels) -> one set, class-aware, best ``max_det`` by score first."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    cls = np.asarray(cls, np.int64).reshape(-1)
    if merge not in MERGES[1:]:
        raise UsageError(f"merge must be greedy_nmm or nms (resolve auto with merge_method), got {merge!r}")
    if len(boxes) == 0:
        return boxes, scores, cls
    if merge == "nms":
        keep = class_aware_nms(boxes, scores, cls, threshold, max_det)
        return boxes[keep], scores[keep], cls[keep]
    out_boxes, out_scores, out_cls = [], [], []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        for keep, members in greedy_nmm(boxes[idx], scores[idx], threshold):
            out_boxes.append(_merge_group(boxes[idx], keep, members, threshold))
            out_scores.append(scores[idx][keep])
            out_cls.append(c)
    order = np.argsort(-np.asarray(out_scores), kind="stable")[:max_det]
    return (np.asarray(out_boxes, np.float32)[order], np.asarray(out_scores, np.float32)[order],
            np.asarray(out_cls, np.int64)[order])
