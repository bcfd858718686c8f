"""Adaptive resolution (``imgsz="auto"``): run an image small first, and pay for a large input only when the
small pass says the large one is likely to pay back.

A conv net's cost is close to proportional to its input pixels. Escalating an image costs its small pass on top
of the large one, so a rule only beats the straight line between the two fixed sizes (mixing them at random)
when the images it escalates gain clearly more than the average image. On coco-val-dev the gain of 512 over 320
comes mostly from *medium* objects (picodet-s-416: AP medium 28.9 -> 37.1, small 10.9 -> 15.4, large 55.6 ->
60.6) and is carried by busy images: it is negative on about a third of the images, and an image in which the
small pass finds nothing gains nothing on average (escalating those, as the first rule did, wastes pixels).

The rule (``escalation_reason``): escalate when the small pass finds at least ``min_objects`` (2) detections
scored ``evidence_conf`` (0.5) or more whose size at the small input, ``sqrt(box_w / W * box_h / H) * small``
(the square root of the box's area in the stretched network input, COCO's notion of size), is under
``object_size`` (64) pixels. Otherwise the small pass is kept, also when it found nothing.

Why these values: 0.5 counts only detections the model is sure of (the count of sure objects is the small
pass's best predictor of the per-image gain: Spearman 0.2-0.4); 64 px at 320 covers COCO's small and medium
objects (under 96 px on a 640-px photo is under 48 px at 320) with a margin for the half-resolution shrinkage;
two objects, because one medium object moves an image's AP little. They were chosen as the setting that is
above the line on both halves of coco-val-dev (image id even / odd) for both models measured, out of a sweep of
evidence_conf x object_size x min_objects; docs/resolution.md gives the numbers and their noise (103 images:
about a point either way). ``benchmarks/adaptive_resolution.py`` repeats the measurement.
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
    detection counts as a sure object. ``object_size``: the size (square root of the box area) at the small
    input, in pixels, under which a sure object is one the large input resolves better. ``min_objects``: how
    many such objects make an image escalate.
    """

    small: int = 320
    large: int = 512
    evidence_conf: float = 0.5
    object_size: float = 64.0
    min_objects: int = 2

    def __post_init__(self) -> None:
        if not MIN_IMGSZ <= self.small < self.large:
            raise UsageError(f"adaptive sizes need {MIN_IMGSZ} <= small < large, got small={self.small}, "
                             f"large={self.large}")
        if not 0.0 <= self.evidence_conf < 1.0:
            raise UsageError(f"evidence_conf must be in [0, 1), got {self.evidence_conf}")
        if self.object_size <= 0 or self.min_objects < 1:
            raise UsageError(f"object_size must be > 0 and min_objects >= 1, got {self.object_size}, "
                             f"{self.min_objects}")


def apparent_sizes(result: Result, size: int) -> np.ndarray:
    """Each box's size (square root of its area) as seen at a ``size`` input (image stretched to it), in pixels.

    Read from the Result alone (the image's shape and boxes), so the rule is the same for stretch-resize and
    letterbox models (for a letterboxed one it is within the image's aspect ratio of the padded input's)."""
    h, w = result.orig_shape
    wh = result.boxes.xyxy[:, 2:] - result.boxes.xyxy[:, :2]
    return np.sqrt(np.clip(wh[:, 0] / max(w, 1), 0, None) * np.clip(wh[:, 1] / max(h, 1), 0, None)) * size


def escalation_reason(result: Result, policy: AdaptivePolicy) -> str | None:
    """Why the large input should run after the small pass ``result`` (a short phrase), or None to keep it."""
    sure = result.boxes.conf >= policy.evidence_conf
    count = int((apparent_sizes(result, policy.small)[sure] < policy.object_size).sum())
    if count >= policy.min_objects:
        return (f"{count} object(s) scored {policy.evidence_conf:g}+ under {policy.object_size:g} px at "
                f"{policy.small}")
    return None
