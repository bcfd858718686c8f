"""The int8-dynamic builder: run-time activation quantization, int8 weights, and the warning that says so."""

from __future__ import annotations

import onnx

from spotdet.backends.onnx_tools import load_onnx
from spotdet.models.ref import resolve_model
from spotdet.optimize.precisions import int8_dynamic
from spotdet.optimize.request import OptimizeRequest


def test_int8_dynamic_quantizes_weights_and_activations_at_run_time():
    ref = resolve_model("yolox-nano")
    built = int8_dynamic.build(load_onnx(ref.path), ref.card, OptimizeRequest("int8-dynamic"))
    ops = {n.op_type for n in built.graph.graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in built.graph.graph.initializer)
    assert built.notes == [int8_dynamic.DYNAMIC_NOTE] and "ConvInteger" in built.notes[0]
