"""The int4 builder: weight-only MatMulNBits where a graph has MatMul/Gemm weights, a reasoned refusal for CNNs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from spotdet.models.card import get_card
from spotdet.optimize import optimize
from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.precisions.int4 import quantize_int4


def test_int4_applies_to_graphs_with_matmul_weights():
    """A graph with a real MatMul weight gets weight-only 4-bit (MatMulNBits) instead of a refusal."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(256, 256)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 256])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = quantize_int4(model, get_card("yolox-nano"))
    assert "MatMulNBits" in {n.op_type for n in q.graph.node}


def test_int4_is_refused_for_a_cnn_with_the_reason():
    with pytest.raises(PrecisionUnsupportedError, match="int4 is not applicable.*MatMul"):
        optimize("yolox-nano", "int4")
