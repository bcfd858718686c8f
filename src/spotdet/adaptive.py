"""Adaptive resolution (``imgsz="auto"``): run an image small first, and pay for a large input only when the
small pass says the image needs one.

A conv net's cost is close to proportional to its input pixels, and most photos are explained at a small
input: a cat filling the frame is found at 320 as well as at 640, for a quarter of the pixels. What a small
input loses is small objects (an object's side shrinks with the input, and below a dozen pixels the network
cannot resolve it) and hard scenes. The small pass shows both: its confident boxes say how small the objects
are, its scores how sure it was.

The rule (``escalation_reason``), on the small pass's detections scored at least ``evidence_conf``:

1. nothing confident (no detection at ``evidence_conf`` or above): escalate, the objects may be too small to
   see at this size (or there are none, which the large pass confirms);
2. small objects: ``min_small`` or more confident detections whose shorter side, seen at the small input, is
   under ``small_side`` pixels: escalate, where some small objects were found more are usually missed;
3. otherwise keep the small pass.

The shorter side "seen at the small input" is ``min(box_w / W, box_h / H) * small``: the box's side in the
network input when the image is stretched to it (exact for stretch-resize models, within the image's aspect
ratio for letterboxed ones), so the rule reads the same for every model and needs only the Result.

The defaults are a first guess (small 320, large 512: picodet-s-416 scores less at 640 than at 512). Measured
on coco-val-dev they land on or below the straight line between the two fixed sizes (docs/resolution.md); a
sweep tuned on coco128-train (+0.4 / +0.8 points above the line there) did not carry over to coco-val-dev, so
the defaults were left as they are. ``benchmarks/adaptive_resolution.py`` repeats the measurement and sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spotdet.errors import UsageError
from spotdet.options import MIN_IMGSZ
from spotdet.results import Result


@dataclass(frozen=True)
class AdaptivePolicy:
    """How ``imgsz="auto"`` chooses (set ``Detector.adaptive_policy``; the same for every call of a detector).

    ``small`` / ``large``: the two square input sizes. ``evidence_conf``: the score from which a small-pass
    detection counts as evidence. ``small_side``: an object's shorter side at the small input, in pixels,
    under which it counts as small. ``min_small``: how many small objects make an image escalate.
    """

    small: int = 320
    large: int = 512
    evidence_conf: float = 0.3
    small_side: float = 24.0
    min_small: int = 1

    def __post_init__(self) -> None:
        if not MIN_IMGSZ <= self.small < self.large:
            raise UsageError(f"adaptive sizes need {MIN_IMGSZ} <= small < large, got small={self.small}, "
                             f"large={self.large}")
        if not 0.0 <= self.evidence_conf < 1.0:
            raise UsageError(f"evidence_conf must be in [0, 1), got {self.evidence_conf}")
        if self.small_side < 0 or self.min_small < 1:
            raise UsageError(f"small_side must be >= 0 and min_small >= 1, got {self.small_side}, "
                             f"{self.min_small}")


def apparent_sides(result: Result, size: int) -> np.ndarray:
    """Each box's shorter side as seen at a ``size`` input (image stretched to it), in pixels."""
    h, w = result.orig_shape
    wh = result.boxes.xyxy[:, 2:] - result.boxes.xyxy[:, :2]
    return np.minimum(wh[:, 0] / max(w, 1), wh[:, 1] / max(h, 1)) * size


def escalation_reason(result: Result, policy: AdaptivePolicy) -> str | None:
    """Why the small pass ``result`` is not enough (a short phrase), or None to keep it."""
    confident = result.boxes.conf >= policy.evidence_conf
    if not confident.any():
        return f"no detection scored {policy.evidence_conf:g} or more"
    sides = apparent_sides(result, policy.small)[confident]
    small = int((sides < policy.small_side).sum())
    if small >= policy.min_small:
        return f"{small} object(s) under {policy.small_side:g} px at {policy.small}"
    return None
