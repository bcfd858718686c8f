"""Dense response targets: the teacher's per-cell outputs, laid on the student's grid.

Pseudo-boxes tell the student where the teacher's confident objects are and nothing else. The teacher's raw
head says more: for every cell, how much each class is there (scores well below any box threshold included),
and which box it would draw. This module runs the teacher on the same letterboxed picture the student sees,
scaled by an integer factor ``k`` (a 416 student gets an 832 teacher input), so that a teacher level of stride
``t`` has exactly the cell count of the student's level of stride ``t / k``. The issue's example is ``k = 2``
for a 640 teacher and a 320 student: the teacher's stride-16 grid is the student's stride-8 grid.

Levels map by the stride they have in the student's picture: student stride ``s`` takes the teacher level of
stride ``s * k``, or, where the teacher has none (the student's coarsest level at ``k = 2``), the teacher's
coarsest level max-pooled onto it. Finer teacher levels with no student counterpart (stride 8 at ``k = 2``:
4 student pixels per cell) are left out: objects that small are below what the student resolves.

Each image's targets are ``(N, 4 + C)`` rows in the student's output order: cx, cy, w, h in student input
pixels and the student's C class scores (teacher classes matched by name; classes the teacher lacks score 0).
They are computed once per image and stored under ``<out>/teacher-maps/`` (one ``.npy`` per image, written
atomically), so an interrupted run continues where it stopped, like the labelling job.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from spotdet.atomic import atomic_path
from spotdet.errors import UnsupportedModelError, UsageError
from spotdet.models.card import ModelCard

MAPS_DIR = "teacher-maps"
#: teacher families whose raw head can be read cell by cell (see ``_levels``)
DENSE_TEACHER_FAMILIES = ("ultralytics", "yolox")
DEFAULT_STRIDES = (8, 16, 32)


def scale_factor(teacher_native: tuple[int, int], student_hw: tuple[int, int]) -> int:
    """The integer k that puts the teacher at or above its own input size: ceil(teacher / student)."""
    return max(1, math.ceil(max(teacher_native) / max(student_hw)))


def check_dense_teacher(card: ModelCard) -> None:
    if card.family not in DENSE_TEACHER_FAMILIES:
        raise UnsupportedModelError(f"{card.name}: dense distillation reads the teacher's raw head, which spotdet "
                                    f"can do for {', '.join(DENSE_TEACHER_FAMILIES)} teachers, not "
                                    f"{card.family!r}; use method 'boxes' (pseudo-labels) with this teacher")


def _levels(card: ModelCard, output: np.ndarray, input_hw: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """[(stride, (gh, gw, 4 + C) cx, cy, w, h in input pixels + class scores)] of one image's raw output."""
    strides = tuple(card.decoder.get("strides", DEFAULT_STRIDES))
    if card.family == "ultralytics":  # [4 + C, N]: boxes already decoded, class scores after the sigmoid
        rows = output.T
    else:  # yolox: [N, 5 + C] offsets, log sizes, obj, class probabilities
        from spotdet.postprocess.decoders import yolox_grid

        grid, stride_col = yolox_grid(tuple(input_hw), strides)
        rows = np.concatenate([(output[:, :2] + grid) * stride_col, np.exp(output[:, 2:4]) * stride_col,
                               output[:, 4:5] * output[:, 5:]], 1)
    levels, start = [], 0
    for s in strides:
        gh, gw = input_hw[0] // s, input_hw[1] // s
        levels.append((s, rows[start:start + gh * gw].reshape(gh, gw, -1)))
        start += gh * gw
    if start != len(rows):
        raise UnsupportedModelError(f"{card.name}: head has {len(rows)} cells, expected {start} for strides "
                                    f"{strides} at {input_hw[1]}x{input_hw[0]}")
    return levels


def _max_pool(level: np.ndarray, factor: int) -> np.ndarray:
    """Pool ``factor`` x ``factor`` cells into one: class scores by max, the box of the strongest cell."""
    gh, gw, d = level.shape[0] // factor, level.shape[1] // factor, level.shape[2]
    blocks = level[:gh * factor, :gw * factor].reshape(gh, factor, gw, factor, d).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(gh, gw, factor * factor, d)
    best = blocks[..., 4:].max(-1).argmax(-1)
    pooled = np.take_along_axis(blocks, best[..., None, None], 2)[:, :, 0].copy()
    pooled[..., 4:] = blocks[..., 4:].max(2)
    return pooled


def on_student_grid(levels: list[tuple[int, np.ndarray]], k: int, student_hw: tuple[int, int],
                    student_strides: tuple[int, ...]) -> np.ndarray:
    """The teacher's levels (strides in its own k-times-larger picture) as the student's rows (N, 4 + C)."""
    by_stride = {t // k: lv for t, lv in levels if t % k == 0}
    coarsest = max((t // k, lv) for t, lv in levels if t % k == 0) if by_stride else None
    rows = []
    for s in student_strides:
        gh, gw = student_hw[0] // s, student_hw[1] // s
        if s in by_stride:
            lv = by_stride[s]
        elif coarsest is not None and s > coarsest[0] and s % coarsest[0] == 0:
            lv = _max_pool(coarsest[1], s // coarsest[0])
        else:
            raise UnsupportedModelError(f"no teacher level lines up with the student's stride {s} at k={k}")
        rows.append(lv[:gh, :gw].reshape(gh * gw, -1))
    out = np.concatenate(rows).astype(np.float32)
    out[:, :4] /= k
    return out


def mirror(maps: np.ndarray, content_width: float, student_hw: tuple[int, int],
           strides: tuple[int, ...]) -> np.ndarray:
    """The targets of the horizontally flipped image, for a student that letterboxes to the top-left.

    The picture occupies columns [0, content_width) of the canvas, so a point x goes to content_width - x; each
    cell takes the targets of the cell nearest its mirror image, and cells in the padding get no class score.
    """
    parts, start = [], 0
    for s in strides:
        gh, gw = student_hw[0] // s, student_hw[1] // s
        level = maps[start:start + gh * gw].reshape(gh, gw, -1)
        start += gh * gw
        centres = (np.arange(gw) + 0.5) * s
        source = np.clip(np.round((content_width - centres) / s - 0.5).astype(int), 0, gw - 1)
        flipped = level[:, source].copy()
        flipped[:, centres >= content_width, 4:] = 0.0
        parts.append(flipped.reshape(gh * gw, -1))
    out = np.concatenate(parts)
    out[:, 0] = content_width - out[:, 0]
    return out


@dataclass
class TeacherMaps:
    """Computes (once) and stores each image's dense targets for one teacher and student geometry."""

    teacher: ModelCard
    teacher_path: Path
    student: ModelCard
    student_hw: tuple[int, int]
    k: int
    folder: Path
    threads: int | None = None  # the teacher's ONNX Runtime threads (None: every core)

    def __post_init__(self) -> None:
        check_dense_teacher(self.teacher)
        if self.student.preprocess.resize != "letterbox" or self.student.preprocess.align != "topleft":
            raise UnsupportedModelError(f"{self.student.name}: dense targets are laid out for students that "
                                        "letterbox to the top-left (YOLOX)")
        names = {n: i for i, n in enumerate(self.teacher.names)}
        self.class_index = np.array([names.get(n, -1) for n in self.student.names])
        if (self.class_index < 0).all():
            raise UsageError(f"teacher {self.teacher.name} and student {self.student.name} share no class names")
        self._session = None

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.student.decoder.get("strides", DEFAULT_STRIDES))

    def path_for(self, image_path: str) -> Path:
        return self.folder / (hashlib.sha1(image_path.encode()).hexdigest()[:16] + ".npy")

    def teacher_input(self, image: np.ndarray) -> np.ndarray:
        """The student's top-left letterbox of ``image``, k times larger, in the teacher's pixel format."""
        from spotdet.vision.preprocess import resize_to_input, to_tensor

        letterbox = replace(self.student.preprocess, pad_value=self.teacher.preprocess.pad_value)
        size = (self.student_hw[0] * self.k, self.student_hw[1] * self.k)
        return to_tensor([resize_to_input(image, size, letterbox)[0]], self.teacher.preprocess)

    def compute(self, image: np.ndarray) -> np.ndarray:
        """The (N, 4 + C_student) targets of one BGR image."""
        from spotdet.backends.onnxruntime import ort_session

        if self._session is None:
            self._session = ort_session(self.teacher_path, threads=self.threads)
        tensor = self.teacher_input(image)
        hw = (tensor.shape[2], tensor.shape[3])
        output = self._session.run(None, {self._session.get_inputs()[0].name: tensor})[0][0]
        rows = on_student_grid(_levels(self.teacher, output, hw), self.k, self.student_hw, self.strides)
        classes = np.where(self.class_index[None] >= 0, rows[:, 4:][:, np.maximum(self.class_index, 0)], 0.0)
        return np.concatenate([rows[:, :4], classes], 1).astype(np.float16)

    def ensure(self, image_paths: list[str], load: Callable[[str], np.ndarray],
               on_progress: Callable[[int, int], None] | None = None) -> None:
        """Compute the targets of every image that has none stored yet (an interrupted run continues)."""
        for i, path in enumerate(image_paths):
            target = self.path_for(path)
            if not target.is_file():
                maps = self.compute(load(path))
                with atomic_path(target) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, maps)
            if on_progress:
                on_progress(i + 1, len(image_paths))

    def load(self, image_path: str) -> np.ndarray:
        return np.load(self.path_for(image_path)).astype(np.float32)
