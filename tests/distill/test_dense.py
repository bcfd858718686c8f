"""Dense targets: teacher levels land on the student's grid by stride, flips mirror them, and a real teacher's
strongest cell is where its own detection is."""

from __future__ import annotations

import numpy as np
import pytest

from spotdet import Detector
from spotdet.distill.dense import TeacherMaps, mirror, on_student_grid, scale_factor
from spotdet.errors import UnsupportedModelError
from spotdet.models.card import get_card
from spotdet.models.ref import resolve_model
from spotdet.vision.preprocess import resize_to_input

STUDENT_HW = (416, 416)
STRIDES = (8, 16, 32)


def test_the_teacher_runs_at_the_smallest_integer_multiple_not_below_its_own_size():
    assert scale_factor((640, 640), (416, 416)) == 2  # 832
    assert scale_factor((640, 640), (320, 320)) == 2  # 640: the example
    assert scale_factor((416, 416), (416, 416)) == 1


def _teacher_levels(k: int, classes: int = 2) -> list[tuple[int, np.ndarray]]:
    """Levels of a teacher run at k x 416, each cell holding its own level's stride as box and its index as score."""
    levels = []
    for t in STRIDES:
        g = STUDENT_HW[0] * k // t
        level = np.zeros((g, g, 4 + classes), np.float32)
        level[..., :4] = t
        level[..., 4] = np.arange(g * g).reshape(g, g) / (g * g)
        levels.append((t, level))
    return levels


def test_levels_map_by_their_stride_in_the_students_picture():
    rows = on_student_grid(_teacher_levels(2), 2, STUDENT_HW, STRIDES)
    assert rows.shape == (52 * 52 + 26 * 26 + 13 * 13, 6)
    p3, p4, p5 = rows[:2704], rows[2704:3380], rows[3380:]
    assert (p3[:, 0] == 16 / 2).all() and (p4[:, 0] == 32 / 2).all()  # teacher strides 16 and 32, boxes halved
    assert (p5[:, 0] == 32 / 2).all()  # the student's stride 32 has no teacher level: stride 32 pooled 2 x 2
    coarse = _teacher_levels(2)[2][1][..., 4]
    assert p5[0, 4] == coarse[:2, :2].max() and p5[-1, 4] == coarse.max()
    same = on_student_grid(_teacher_levels(1), 1, STUDENT_HW, STRIDES)
    assert (same[:, 0] == np.repeat([8, 16, 32], [2704, 676, 169])).all()  # k = 1: level for level


def test_mirroring_twice_gives_the_targets_back():
    rng = np.random.default_rng(0)
    maps = rng.random((3549, 6)).astype(np.float32) * 100
    back = mirror(mirror(maps, 416, STUDENT_HW, STRIDES), 416, STUDENT_HW, STRIDES)
    assert np.allclose(back, maps, atol=1e-3)  # x goes through 416 - x twice in float32
    once = mirror(maps, 416, STUDENT_HW, STRIDES)
    assert once[0, 4] == maps[51, 4]  # first row's first cell takes the last cell of that row
    assert once[0, 0] == pytest.approx(416 - maps[51, 0], rel=1e-5)  # and its box centre mirrored
    narrow = mirror(maps, 200, STUDENT_HW, STRIDES)  # a portrait image fills 200 of 416 columns
    assert (narrow[:2704].reshape(52, 52, 6)[:, 25:, 4:] == 0).all()  # padding cells score nothing


def test_a_real_teachers_strongest_cell_is_its_own_top_detection(photos, tmp_path):
    """yolox-nano teaching itself at k = 1: the maps must hold exactly what its decoder turns into boxes."""
    ref = resolve_model("yolox-nano")
    maps = TeacherMaps(ref.card, ref.path, ref.card, STUDENT_HW, 1, tmp_path)
    image = photos["astronaut"]
    rows = maps.compute(image).astype(np.float32)
    top = Detector("yolox-nano")(image)[0].boxes
    best = rows[:, 4:].max(1).argmax()
    assert rows[best, 4:].max() == pytest.approx(float(top.conf.max()), abs=2e-3)
    _, transform = resize_to_input(image, STUDENT_HW, ref.card.preprocess)
    cx, cy, w, h = rows[best, :4] / transform.scale_x
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    assert np.abs(box - top.xyxy[top.conf.argmax()]).max() < 2.0  # image pixels (float16 storage)
    assert ref.card.names[int(rows[best, 4:].argmax())] == "person"


def test_teachers_whose_head_is_not_read_are_refused(tmp_path):
    student = get_card("yolox-nano")
    with pytest.raises(UnsupportedModelError, match="raw head"):
        TeacherMaps(get_card("picodet-s-416"), tmp_path / "x.onnx", student, STUDENT_HW, 1, tmp_path)
