"""Graph preparation before conversion (real PicoDet file: initializers listed as inputs, opset 11)."""

from __future__ import annotations

from support.paths import MODEL_DIR
from spotdet.backends.onnx_tools import load_onnx, onnx_opset
from spotdet.optimize.graph_prep import prepare


def test_graph_prep_removes_initializer_inputs_and_upgrades_opset():
    raw = load_onnx(MODEL_DIR / "picodet_s_416_coco.onnx")
    assert len(raw.graph.input) > 1 and onnx_opset(raw) == 11
    prepped = prepare(raw)
    assert len(prepped.graph.input) == 1
    assert onnx_opset(prepped) >= 13
    assert len(raw.graph.input) > 1  # the caller's model is left alone
