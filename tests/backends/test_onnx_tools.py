"""The ONNX toolbox on small hand-made graphs (exact results) and on a real exporter quirk (PicoDet)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spotdet.backends.onnx_tools import (dims, graph_precision, load_onnx, real_inputs, remove_initializer_inputs,
                                         toposort)
from spotdet.errors import UnsupportedModelError
from support.paths import MODEL_DIR


def two_node_graph(reverse: bool, weight_as_input: bool = False) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    nodes = [helper.make_node("Add", ["x", "w"], ["h"], name="first"), helper.make_node("Relu", ["h"], ["y"], name="second")]
    graph = helper.make_graph(nodes[::-1] if reverse else nodes, "g", [x, w] if weight_as_input else [x], [y],
                              [numpy_helper.from_array(np.ones(3, np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_toposort_orders_producers_first():
    model = two_node_graph(reverse=True)
    assert [n.name for n in model.graph.node] == ["second", "first"]
    assert toposort(model.graph) is True
    assert [n.name for n in model.graph.node] == ["first", "second"]
    onnx.checker.check_model(model)


def test_toposort_leaves_a_cycle_as_it_was():
    model = two_node_graph(reverse=False)
    model.graph.node[0].input[0] = "y"  # first now needs second's output, and second needs first's
    assert toposort(model.graph) is False
    assert [n.name for n in model.graph.node] == ["first", "second"]


def test_initializers_listed_as_inputs_are_dropped():
    model = two_node_graph(reverse=False, weight_as_input=True)
    assert [i.name for i in real_inputs(model)] == ["x"]
    assert remove_initializer_inputs(model) == 1
    assert [i.name for i in model.graph.input] == ["x"]
    assert remove_initializer_inputs(model) == 0


def test_dims_reads_fixed_and_symbolic_dimensions():
    model = two_node_graph(reverse=False)
    assert dims(model.graph.input[0]) == ["batch", 3]
    picodet = load_onnx(MODEL_DIR / "picodet_s_416_coco.onnx", check=False)
    assert len(picodet.graph.input) > 100  # the old exporter lists every weight as an input
    assert [(i.name, dims(i)) for i in real_inputs(picodet)] == [("image", [1, 3, 416, 416])]


def test_unreadable_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01not protobuf")
    with pytest.raises(UnsupportedModelError, match="bad.onnx is not a readable ONNX model"):
        load_onnx(bad)


@pytest.mark.parametrize("file, precision", [("yolox_nano.onnx", "fp32"), ("yolov8n_int8.onnx", "int8-dynamic")])
def test_graph_precision_of_the_zoo_files(file, precision):
    assert graph_precision(load_onnx(MODEL_DIR / file, check=False)) == precision


def test_graph_precision_of_qdq_and_half_graphs():
    model = two_node_graph(reverse=False)
    assert graph_precision(model) == "fp32"
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones(3, np.float16), "w"))
    assert graph_precision(model) == "fp16"
    model.graph.node.append(helper.make_node("DequantizeLinear", ["q", "s"], ["d"]))
    assert graph_precision(model) == "int8-static"
