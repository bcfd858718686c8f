"""Image -> network tensor in one resize and one padded copy, plus the transform to map boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spotdet.models.card import PreprocessSpec


@dataclass(frozen=True)
class Transform:
    """Input-tensor pixel -> original pixel: ``orig = (x - pad) / scale`` per axis."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int

    def to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map boxes (N,4) from tensor pixels to original pixels, clipped to the image."""
        out = np.empty_like(boxes_xyxy, dtype=np.float32)
        out[:, [0, 2]] = (boxes_xyxy[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (boxes_xyxy[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.orig_w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.orig_h)
        return out


def resize_to_input(img: np.ndarray, size_hw: tuple[int, int], spec: PreprocessSpec) -> tuple[np.ndarray, Transform]:
    """Resize (and letterbox-pad) ``img`` to exactly ``size_hw``."""
    h, w = img.shape[:2]
    th, tw = size_hw
    if spec.resize == "stretch":
        resized = cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR)
        return resized, Transform(tw / w, th / h, 0.0, 0.0, w, h)
    r = min(th / h, tw / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    resized = img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if spec.align == "center":
        dw, dh = (tw - nw) / 2, (th - nh) / 2
        top, left = round(dh - 0.1), round(dw - 0.1)
    else:
        top, left = 0, 0
    bottom, right = th - nh - top, tw - nw - left
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(spec.pad_value,) * 3)
    return padded, Transform(nw / w, nh / h, float(left), float(top), w, h)


def to_tensor(images: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Stack same-size BGR images into an NCHW float32 tensor: (pixel - mean) / std in ``spec.channels`` order."""
    std = np.asarray(spec.std, np.float32)
    blob = cv2.dnn.blobFromImages(images, scalefactor=1.0 / float(std[0]), mean=tuple(spec.mean),
                                  swapRB=spec.channels == "rgb", crop=False)
    if not np.all(std == std[0]):
        blob *= (std[0] / std).reshape(1, 3, 1, 1)
    return blob


def preprocess(img: np.ndarray, size_hw: tuple[int, int], spec: PreprocessSpec) -> tuple[np.ndarray, Transform]:
    """One image -> (1,3,H,W) tensor and its transform."""
    resized, transform = resize_to_input(img, size_hw, spec)
    return to_tensor([resized], spec), transform
