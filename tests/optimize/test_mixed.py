"""Automatic mixed precision for int8-static: the activations 8 bits ruin stay in float (real models, real
COCO images)."""

from __future__ import annotations

import onnx
import pytest

from support.paths import COCO128, MODEL_DIR, VAL_DIR
from spotdet import Detector
from spotdet.backends.onnx_tools import load_onnx
from spotdet.optimize import optimize
from spotdet.optimize.graph_prep import prepare


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_int8_static_a8_mixed_precision_stays_close_to_fp32(model, tmp_path):
    """A8W8 with the automatic float-activation selection: mAP within 2 points of fp32 on 40 val images.

    Without the selection these models lose almost everything (yolox-nano ~5, picodet ~0 mAP), which
    the second half checks, so this test fails if the selection stops doing its job."""
    from spotdet.eval.coco import evaluate

    res = optimize(model, "int8-static", out=tmp_path / "m.onnx", calib=COCO128, calib_count=20, progress=False)
    assert res.mixed is not None and res.mixed.reached and res.mixed.final_db >= res.mixed.target_db
    assert 0 < len(res.mixed.float_tensors) <= res.mixed.candidates // 2
    q = evaluate(Detector(res.path), VAL_DIR, limit=40)
    f = evaluate(Detector(model), VAL_DIR, limit=40)
    assert q.images == f.images == 40 and f.map50_95 > 20.0
    assert abs(f.map50_95 - q.map50_95) <= 2.0, (f.map50_95, q.map50_95)

    plain = optimize(model, "int8-static", out=tmp_path / "p.onnx", calib=COCO128, calib_count=20, progress=False,
                     mixed=False)
    assert plain.mixed is None
    p = evaluate(Detector(plain.path), VAL_DIR, limit=10)
    fp = evaluate(Detector(model), VAL_DIR, limit=10)
    assert p.map50_95 < fp.map50_95 - 5.0, (p.map50_95, fp.map50_95)


def test_keep_float_removes_only_the_chosen_activation_pairs():
    from spotdet.models.card import get_card
    from spotdet.optimize.calibration import calibration_images
    from spotdet.optimize.mixed import activation_params, keep_float
    from spotdet.optimize.precisions.int8_static import quantize_static_int8

    prepped = prepare(load_onnx(MODEL_DIR / "yolox_nano.onnx"))
    q, info = quantize_static_int8(prepped, get_card("yolox-nano"), calibration_images(COCO128, 2), progress=False,
                                   mixed=False)
    params = activation_params(q)
    chosen = list(params)[:3]
    out = keep_float(q, chosen)
    onnx.checker.check_model(out)
    left = activation_params(out)
    assert set(left) == set(params) - set(chosen)
    n_q = sum(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert sum(n.op_type == "QuantizeLinear" for n in out.graph.node) == n_q - 3
