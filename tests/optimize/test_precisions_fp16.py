"""The fp16 builder on the real zoo graphs: half-precision weights, float32 inputs and outputs, the CPU note."""

from __future__ import annotations

import onnx
import pytest

from spotdet.backends.onnx_tools import load_onnx
from spotdet.models.ref import resolve_model
from spotdet.optimize.precisions import fp16
from spotdet.optimize.request import OptimizeRequest


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_fp16_halves_the_weights_and_keeps_float32_io(model):
    ref = resolve_model(model)
    source = load_onnx(ref.path)
    built = fp16.build(source, ref.card, OptimizeRequest("fp16"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in built.graph.graph.initializer)
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in source.graph.initializer)  # a new graph
    for value in [*built.graph.graph.input, *built.graph.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, value.name
    assert built.notes == [fp16.CPU_NOTE]
    assert any("memory, not speed" in n or "not make inference faster" in n for n in built.notes)
    assert built.excluded == [] and built.mixed_info is None and built.card_notes == []
