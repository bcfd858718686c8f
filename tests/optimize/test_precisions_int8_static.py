"""The int8-static builder on real models and real COCO calibration images: QDQ, the head kept in float,
and --exclude-nodes replacing the automatic head choice."""

from __future__ import annotations

import onnx
import pytest

from support.paths import COCO128
from spotdet import Detector
from spotdet.optimize import optimize
from spotdet.optimize.errors import PrecisionUnsupportedError


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_int8_static_keeps_classes_and_head_in_float(model, assert_keeps_classes, tmp_path):
    out = tmp_path / f"{model}-static.onnx"
    res = optimize(model, "int8-static", out=out, calib=COCO128, calib_count=16, activation_bits=16, progress=False)
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert res.excluded_nodes and set(res.excluded_nodes) <= {n.name for n in graph.node}
    # every excluded head node is a float node: none of its outputs is quantized
    quantized_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    checked = 0
    for node in graph.node:
        if node.name in res.excluded_nodes and node.op_type != "Conv":
            assert not (set(node.output) & quantized_inputs), node.name
            checked += 1
    assert checked > 0  # the loop above looked at some head nodes
    assert_keeps_classes(Detector(out))


def test_exclude_nodes_replaces_the_head_choice(tmp_path):
    res = optimize("yolox-nano", "int8-static", out=tmp_path / "x.onnx", calib=COCO128, calib_count=4,
                   exclude_nodes=[], progress=False)
    assert res.excluded_nodes == []
    with pytest.raises(PrecisionUnsupportedError, match="no node named"):
        optimize("yolox-nano", "int8-static", out=tmp_path / "y.onnx", calib=COCO128, calib_count=4,
                 exclude_nodes=["nope"], progress=False)
