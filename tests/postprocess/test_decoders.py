"""Every family decoder checked on a small hand-built head output against hand-computed boxes and scores.

The expected values are written out from the formulas in ../shared/models/MODELS.md with plain ``math``
arithmetic, never with the decoders' own helpers, so a changed constant (an exponent, a grid offset, a
stride, sigmoid vs tanh, the softmax/expectation of the distribution head) makes these tests fail.
Input sizes are deliberately non-square so that a swapped height/width is caught too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spotdet.postprocess.decoders import DECODERS, get_decoder

CONF = 0.25


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def rows(boxes, scores, cls) -> list[tuple]:
    """Decoder output as (class, score, x1, y1, x2, y2) rows, highest score first (order-independent compare)."""
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert boxes.shape == (len(scores), 4) and cls.shape == scores.shape
    assert np.issubdtype(cls.dtype, np.integer)
    out = [(int(c), float(s), *map(float, b)) for b, s, c in zip(boxes, scores, cls)]
    return sorted(out, key=lambda r: -r[1])


def check(got: list[tuple], expected: list[tuple]) -> None:
    expected = sorted(expected, key=lambda r: -r[1])
    assert [r[0] for r in got] == [r[0] for r in expected], (got, expected)
    for g, e in zip(got, expected):
        assert g[1] == pytest.approx(e[1], rel=1e-5, abs=1e-6), (g, e)
        assert g[2:] == pytest.approx(e[2:], rel=1e-5, abs=1e-3), (g, e)


def xyxy(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def test_every_registered_family_has_a_test_here():
    # A new decoder must come with its own hand-computed test in this file.
    assert set(DECODERS) == {"ultralytics", "yolox", "fastestdet", "picodet"}
    for family in DECODERS:
        assert get_decoder(family) is DECODERS[family]
    with pytest.raises(KeyError, match="no decoder"):
        get_decoder("nope")


# --------------------------------------------------------------------------------------------- ultralytics
def test_ultralytics_boxes_scores_classes():
    # [4+C, N]: cx, cy, w, h in input pixels, then C class scores (no objectness).
    c, n = 3, 6
    pred = np.zeros((4 + c, n), np.float32)
    pred[:4, 0] = [100, 50, 40, 20];   pred[4:, 0] = [0.10, 0.70, 0.20]   # best class 1
    pred[:4, 1] = [300, 200, 60, 90];  pred[4:, 1] = [0.249, 0.10, 0.0]  # just below conf: dropped
    pred[:4, 2] = [10.5, 400, 7, 33];  pred[4:, 2] = [0.0, 0.0, 0.251]   # just above conf, class 2
    pred[:4, 3] = [620, 630, 30, 18];  pred[4:, 3] = [0.95, 0.90, 0.30]  # several above conf: best is 0
    pred[:4, 4] = [5, 6, 8, 10];       pred[4:, 4] = [0.0, 0.0, 0.0]     # nothing
    pred[:4, 5] = [250, 120, 100, 50]; pred[4:, 5] = [0.3, 0.6, 0.55]    # best class 1
    got = rows(*DECODERS["ultralytics"]([pred], (480, 640), CONF, {}))
    check(got, [
        (1, 0.70, 80, 40, 120, 60),
        (2, 0.251, 7, 383.5, 14, 416.5),
        (0, 0.95, 605, 621, 635, 639),
        (1, 0.6, 200, 95, 300, 145),
    ])


def test_ultralytics_stride_param_from_byo_cards_is_accepted_and_nothing_above_conf_is_empty():
    pred = np.zeros((4 + 2, 3), np.float32)
    pred[4:] = 0.2
    boxes, scores, cls = DECODERS["ultralytics"]([pred], (640, 640), CONF, {"stride": 32})
    assert boxes.shape == (0, 4) and scores.shape == (0,) and cls.shape == (0,)


# ------------------------------------------------------------------------------------------------- yolox
def yolox_row(level_offset: int, grid_w: int, gx: int, gy: int) -> int:
    """Row of cell (gx, gy) in a level whose rows start at level_offset (row-major, x fastest)."""
    return level_offset + gy * grid_w + gx


def test_yolox_grid_stride_exp_and_obj_times_cls():
    # input h=64, w=96 with the card's strides 8, 16, 32: grids 8x12 (96 rows), 4x6 (24), 2x3 (6) = 126 rows.
    h, w = 64, 96
    c = 3
    pred = np.zeros((126, 5 + c), np.float32)  # obj 0 everywhere else: score 0, dropped
    expected = []

    r = yolox_row(0, 12, gx=5, gy=3)  # stride 8
    pred[r] = [0.3, -0.2, 0.5, -0.25, 0.9, 0.2, 0.8, 0.5]
    expected.append((1, 0.9 * 0.8, *xyxy((5 + 0.3) * 8, (3 - 0.2) * 8, math.exp(0.5) * 8, math.exp(-0.25) * 8)))

    r = yolox_row(96, 6, gx=4, gy=2)  # stride 16
    pred[r] = [0.1, 0.7, 1.2, 0.4, 0.5, 0.6, 0.1, 0.3]
    expected.append((0, 0.5 * 0.6, *xyxy((4 + 0.1) * 16, (2 + 0.7) * 16, math.exp(1.2) * 16, math.exp(0.4) * 16)))

    r = yolox_row(120, 3, gx=2, gy=1)  # stride 32, last cell
    pred[r] = [-0.4, 0.45, 0.0, 0.9, 0.99, 0.0, 0.2, 0.97]
    expected.append((2, 0.99 * 0.97, *xyxy((2 - 0.4) * 32, (1 + 0.45) * 32, 1.0 * 32, math.exp(0.9) * 32)))

    r = yolox_row(0, 12, gx=11, gy=0)  # obj * cls = 0.251: just above conf
    pred[r] = [0.5, 0.5, 0.0, 0.0, 0.5, 0.502, 0.0, 0.0]
    expected.append((0, 0.5 * 0.502, *xyxy((11 + 0.5) * 8, 0.5 * 8, 8, 8)))

    # obj*cls just below conf (0.5*0.499): dropped.
    pred[yolox_row(0, 12, gx=0, gy=7)] = [0.5, 0.5, 0.0, 0.0, 0.5, 0.499, 0.0, 0.0]
    # obj and the class both above conf, their product (0.24) below: dropped (score is obj*cls).
    pred[yolox_row(96, 6, gx=0, gy=0)] = [0.5, 0.5, 0.0, 0.0, 0.6, 0.0, 0.4, 0.0]
    # high class probability, no objectness: dropped.
    pred[yolox_row(0, 12, gx=3, gy=3)] = [0.5, 0.5, 0.0, 0.0, 0.0, 0.99, 0.99, 0.99]

    got = rows(*DECODERS["yolox"]([pred], (h, w), CONF, {"strides": [8, 16, 32]}))
    check(got, expected)


def test_yolox_strides_param_is_used():
    # strides (4, 16) on a 32x16 (h x w) input: grids 8x4 (32 rows) then 2x1 (2 rows).
    pred = np.zeros((34, 6), np.float32)
    pred[yolox_row(0, 4, gx=3, gy=6)] = [0.25, 0.75, math.log(3.0), 0.0, 0.8, 0.9]
    pred[yolox_row(32, 1, gx=0, gy=1)] = [0.5, 0.5, 0.0, math.log(0.5), 0.7, 0.8]
    got = rows(*DECODERS["yolox"]([pred], (32, 16), CONF, {"strides": [4, 16]}))
    check(got, [
        (0, 0.72, *xyxy((3 + 0.25) * 4, (6 + 0.75) * 4, 3.0 * 4, 1.0 * 4)),
        (0, 0.56, *xyxy(0.5 * 16, 1.5 * 16, 16, 0.5 * 16)),
    ])


def test_yolox_card_row_count_and_mismatch_raises():
    # MODELS.md: yolox_nano at 416x416, strides 8,16,32 -> 3549 rows.
    pred = np.zeros((3549, 85), np.float32)
    boxes, _, _ = DECODERS["yolox"]([pred], (416, 416), CONF, {"strides": [8, 16, 32]})
    assert boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="3549"):
        DECODERS["yolox"]([pred[:-1]], (416, 416), CONF, {"strides": [8, 16, 32]})


# -------------------------------------------------------------------------------------------- fastestdet
def fastestdet_score(obj: float, cls: float) -> float:
    return obj ** 0.6 * cls ** 0.4


def test_fastestdet_exponents_tanh_sigmoid_and_grid():
    # [5+C, H, W] = obj, tx, ty, tw, th, C class probabilities; grid 3 rows x 4 cols, input h=90, w=160.
    c, gh, gw = 3, 3, 4
    h, w = 90, 160
    pred = np.zeros((5 + c, gh, gw), np.float32)  # obj 0 elsewhere
    expected = []

    def put(gy, gx, obj, tx, ty, tw, th, cls):
        pred[:, gy, gx] = [obj, tx, ty, tw, th, *cls]

    put(1, 2, 0.8, 0.3, -0.5, 0.2, -1.0, [0.1, 0.6, 0.3])
    expected.append((1, fastestdet_score(0.8, 0.6),
                     *xyxy((2 + math.tanh(0.3)) / gw * w, (1 + math.tanh(-0.5)) / gh * h, sigmoid(0.2) * w, sigmoid(-1.0) * h)))

    put(2, 3, 0.3, -0.9, 0.7, -2.0, 1.5, [0.2, 0.05, 0.15])  # last cell; low obj, best class 0
    expected.append((0, fastestdet_score(0.3, 0.2),
                     *xyxy((3 + math.tanh(-0.9)) / gw * w, (2 + math.tanh(0.7)) / gh * h, sigmoid(-2.0) * w, sigmoid(1.5) * h)))

    put(0, 1, 0.95, 0.0, 0.0, 0.0, 0.0, [0.3, 0.3, 0.9])  # first row, class 2
    expected.append((2, fastestdet_score(0.95, 0.9), *xyxy(1 / gw * w, 0.0, 0.5 * w, 0.5 * h)))

    # Threshold sits on obj^0.6 * cls^0.4: pick the class probability that puts the score just above /
    # just below conf for obj = 0.5 (0.5^0.5 * cls^0.5 would be on the other side for both).
    cls_above = ((CONF + 2e-4) / 0.5 ** 0.6) ** (1 / 0.4)
    cls_below = ((CONF - 2e-4) / 0.5 ** 0.6) ** (1 / 0.4)
    put(2, 0, 0.5, 0.1, 0.1, 0.0, 0.0, [0.0, cls_above, 0.0])
    expected.append((1, CONF + 2e-4, *xyxy((0 + math.tanh(0.1)) / gw * w, (2 + math.tanh(0.1)) / gh * h, 0.5 * w, 0.5 * h)))
    put(0, 3, 0.5, 0.1, 0.1, 0.0, 0.0, [cls_below, 0.0, 0.0])  # dropped
    put(1, 0, 0.0, 0.1, 0.1, 0.0, 0.0, [0.99, 0.99, 0.99])  # no objectness: dropped

    got = rows(*DECODERS["fastestdet"]([pred], (h, w), CONF, {}))
    check(got, expected)


def test_fastestdet_card_shape():
    # MODELS.md: [1,85,22,22] at 352x352; one object in cell (gy=21, gx=0).
    pred = np.zeros((85, 22, 22), np.float32)
    pred[:5, 21, 0] = [0.7, 0.5, -0.5, 0.3, 0.1]
    pred[5 + 79, 21, 0] = 0.6
    got = rows(*DECODERS["fastestdet"]([pred], (352, 352), CONF, {}))
    check(got, [(79, fastestdet_score(0.7, 0.6),
                 *xyxy((0 + math.tanh(0.5)) / 22 * 352, (21 + math.tanh(-0.5)) / 22 * 352, sigmoid(0.3) * 352, sigmoid(0.1) * 352))])


# ----------------------------------------------------------------------------------------------- picodet
def expected_distance(logits: list[float], stride: int) -> float:
    """GFL side distance: softmax over the bins, expectation of the bin index, times the stride."""
    e = [math.exp(v) for v in logits]
    return sum(i * v for i, v in enumerate(e)) / sum(e) * stride


def picodet_case(h, w, strides, reg_max, candidates):
    """Hand-built maps; candidates = (level, gx, gy, class scores, 4 lists of bin logits (l, t, r, b))."""
    bins = reg_max + 1
    sizes = [(-(-h // s)) * (-(-w // s)) for s in strides]
    c = len(candidates[0][3])
    score_maps = [np.zeros((n, c), np.float32) for n in sizes]
    box_maps = [np.zeros((n, 4 * bins), np.float32) for n in sizes]
    expected = []
    for level, gx, gy, cls, sides in candidates:
        s = strides[level]
        grid_w = -(-w // s)
        r = gy * grid_w + gx
        score_maps[level][r] = cls
        box_maps[level][r] = np.concatenate([np.asarray(v, np.float32) for v in sides])
        cx, cy = (gx + 0.5) * s, (gy + 0.5) * s
        dl, dt, dr, db = (expected_distance(v, s) for v in sides)
        best = max(range(c), key=lambda i: cls[i])
        if cls[best] > CONF:
            expected.append((best, cls[best], cx - dl, cy - dt, cx + dr, cy + db))
    return score_maps + box_maps, expected


def test_picodet_card_params_softmax_expectation_around_cell_centres():
    # Card params: strides 8,16,32,64, reg_max 7 (8 bins, box maps of 32). Input h=128, w=192.
    strides, reg_max = [8, 16, 32, 64], 7
    onehot = lambda i, v=20.0: [v if k == i else 0.0 for k in range(8)]
    candidates = [
        (0, 5, 3, [0.1, 0.8, 0.3], [onehot(2), onehot(1), onehot(3), onehot(4)]),            # ~integer bins
        (1, 11, 7, [0.9, 0.2, 0.1], [[0.5, 1.0, 2.0, 1.0, 0.0, -1.0, 0.0, 0.3],              # last cell
                                     [0.0] * 8,                                                 # uniform: 3.5
                                     [3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                                     [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.5]]),
        (2, 0, 0, [0.0, 0.251, 0.0], [[0.2] * 8, onehot(0), onehot(7), [0, 1, 2, 3, 4, 5, 6, 7]]),  # just above
        (3, 2, 1, [0.3, 0.2, 0.7], [onehot(1, 2.0), onehot(2, 2.0), onehot(3, 2.0), onehot(4, 2.0)]),
        (0, 0, 15, [0.249, 0.1, 0.0], [onehot(1)] * 4),                                         # below: dropped
        (2, 5, 3, [0.0, 0.0, 0.0], [onehot(1)] * 4),                                            # nothing
    ]
    outputs, expected = picodet_case(128, 192, strides, reg_max, candidates)
    assert [len(m) for m in outputs[:4]] == [16 * 24, 8 * 12, 4 * 6, 2 * 3]
    assert len(expected) == 4
    got = rows(*DECODERS["picodet"](outputs, (128, 192), CONF, {"strides": strides, "reg_max": reg_max}))
    check(got, expected)


def test_picodet_416_partial_last_level():
    # picodet_s_416: 416 / 64 = 6.5 -> the stride-64 map has 7x7 cells; centres run to (6 + 0.5) * 64 = 416.
    strides, reg_max = [8, 16, 32, 64], 7
    side = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    candidates = [(3, 6, 6, [0.0] * 79 + [0.6], [side] * 4), (3, 6, 0, [0.0] * 79 + [0.0], [side] * 4)]
    outputs, expected = picodet_case(416, 416, strides, reg_max, candidates)
    assert [len(m) for m in outputs[:4]] == [2704, 676, 169, 49]
    got = rows(*DECODERS["picodet"](outputs, (416, 416), CONF, {"strides": strides, "reg_max": reg_max}))
    check(got, expected)
    assert got[0][2] < 416 < got[0][4]


def test_picodet_strides_and_reg_max_params_are_used():
    # reg_max 3 (4 bins, box maps of 16) and two levels (4, 32) on a 32x64 (h x w) input.
    strides, reg_max = [4, 32], 3
    candidates = [
        (0, 13, 6, [0.2, 0.9], [[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0]]),
        (1, 1, 0, [0.7, 0.1], [[0.0, 0.0, 4.0, 0.0], [0.0, 0.5, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
    ]
    outputs, expected = picodet_case(32, 64, strides, reg_max, candidates)
    assert [m.shape for m in outputs] == [(128, 2), (2, 2), (128, 16), (2, 16)]
    got = rows(*DECODERS["picodet"](outputs, (32, 64), CONF, {"strides": strides, "reg_max": reg_max}))
    check(got, expected)


def test_picodet_nothing_above_conf_is_empty():
    outputs, _ = picodet_case(64, 64, [8, 16, 32, 64], 7, [(0, 0, 0, [0.2499, 0.1], [[0.0] * 8] * 4)])
    boxes, scores, cls = DECODERS["picodet"](outputs, (64, 64), CONF, {"strides": [8, 16, 32, 64], "reg_max": 7})
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32
    assert scores.shape == (0,) and cls.shape == (0,)
