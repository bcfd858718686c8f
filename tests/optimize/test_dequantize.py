"""The dequantize rewrite: a hand-built DynamicQuantizeLinear/ConvInteger chain, then the real INT8 exports."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spotdet.backends.onnxruntime import ort_session
from spotdet.optimize.precisions.dequantize import dequantize_conv_integer
from spotdet.optimize.errors import PrecisionUnsupportedError
from support.paths import MODEL_DIR

W = np.array([[[[3, 1], [0, 2]]], [[[5, 5], [5, 9]]]], np.uint8)  # (C_out=2, C_in=1, 2, 2)
W_ZP, W_SCALE = np.uint8(2), np.float32(0.5)


def chain_graph(per_channel: bool = False) -> onnx.ModelProto:
    """x -> DQL -> ConvInteger(w) -> Cast -> Mul(x_scale * w_scale) -> Relu: the exporters' pattern."""
    scale = np.array([0.5, 0.25], np.float32) if per_channel else W_SCALE
    inits = [numpy_helper.from_array(W, "w_q"), numpy_helper.from_array(np.array(W_ZP), "w_zp"),
             numpy_helper.from_array(np.asarray(scale, np.float32), "w_scale")]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["x_q", "x_scale", "x_zp"]),
        helper.make_node("ConvInteger", ["x_q", "w_q", "x_zp", "w_zp"], ["acc"], name="conv0", kernel_shape=[2, 2]),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_scale", "w_scale"], ["scales"]),
        helper.make_node("Mul", ["acc_f", "scales"], ["conv_out"]),
        helper.make_node("Relu", ["conv_out"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_chain_becomes_one_float_conv_with_dequantized_weights():
    model, n = dequantize_conv_integer(chain_graph())
    onnx.checker.check_model(model)
    assert n == 1 and [node.op_type for node in model.graph.node] == ["Conv", "Relu"]
    conv = model.graph.node[0]
    assert list(conv.input)[0] == "x" and conv.output[0] == "conv_out"
    weights = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == conv.input[1]))
    np.testing.assert_array_equal(weights, (W.astype(np.float32) - 2.0) * 0.5)  # (w - zero point) x scale
    assert {i.name for i in model.graph.initializer} == {conv.input[1]}  # the integer weights are gone


def test_float_graph_computes_the_exact_float_convolution():
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) / 8.0
    model, _ = dequantize_conv_integer(chain_graph())
    got = ort_session(model).run(None, {"x": x})[0]
    w = (W.astype(np.float32) - 2.0) * 0.5
    expected = np.zeros((1, 2, 2, 2), np.float32)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                expected[0, c, i, j] = max(0.0, float((x[0, 0, i:i + 2, j:j + 2] * w[c, 0]).sum()))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    quantized = ort_session(chain_graph()).run(None, {"x": x})[0]  # the INT8 graph only approximates it
    np.testing.assert_allclose(quantized, expected, atol=0.05)


def test_per_channel_scales_broadcast_over_output_channels():
    model, _ = dequantize_conv_integer(chain_graph(per_channel=True))
    conv = model.graph.node[0]
    weights = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == conv.input[1]))
    np.testing.assert_array_equal(weights[0], (W[0].astype(np.float32) - 2.0) * 0.5)
    np.testing.assert_array_equal(weights[1], (W[1].astype(np.float32) - 2.0) * 0.25)


def test_a_chain_that_does_not_fit_is_refused_whole():
    model = chain_graph()
    model.graph.node[2].op_type = "Identity"  # ConvInteger -> something other than Cast
    del model.graph.node[2].attribute[:]
    with pytest.raises(PrecisionUnsupportedError, match="conv0.*does not go to exactly one Cast"):
        dequantize_conv_integer(model)
    with pytest.raises(PrecisionUnsupportedError, match="no ConvInteger"):
        dequantize_conv_integer(onnx.load(str(MODEL_DIR / "yolox_nano.onnx")))


@pytest.mark.parametrize("file, chains", [("yolov8n_int8.onnx", 64), ("yolo11n_int8.onnx", 88)])
def test_real_int8_exports_become_float_models(file, chains):
    model, n = dequantize_conv_integer(onnx.load(str(MODEL_DIR / file)))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert n == chains and not ops & {"ConvInteger", "DynamicQuantizeLinear", "Cast"}
    assert sum(node.op_type == "Conv" for node in model.graph.node) == chains


def test_optimize_writes_a_float_variant_that_scores_like_the_int8_file(tmp_path):
    """`spotdet optimize yolov8n-int8 --precision fp32`: a variant card, loadable by precision, same mAP."""
    from spotdet import Detector
    from spotdet.eval.coco import evaluate
    from spotdet.optimize.api import optimize
    from support.paths import VAL_DIR

    result = optimize("yolov8n-int8", "fp32", progress=False)
    assert result.card.name == "yolov8n-int8-fp32" and result.card.precision == "fp32"
    assert result.card.parent == "yolov8n-int8" and "dequantized from yolov8n-int8" in result.card.notes
    float_det = Detector("yolov8n-int8", precision="fp32", backend="onnxruntime")
    assert float_det.model_path == result.path
    int8 = evaluate(Detector("yolov8n-int8"), VAL_DIR, limit=25).map50_95
    dequantized = evaluate(float_det, VAL_DIR, limit=25).map50_95
    assert dequantized >= int8 - 0.3, (dequantized, int8)  # activation rounding gone: as good or better


def test_only_dynamic_int8_sources_are_dequantized():
    from dataclasses import replace

    from spotdet.models.card import get_card
    from spotdet.optimize.precisions import builder_for
    from spotdet.optimize.request import OptimizeRequest

    static = replace(get_card("yolox-nano"), precision="int8-static")
    with pytest.raises(PrecisionUnsupportedError, match="fp32 is built from an int8-dynamic model here; "
                                                        "yolox-nano is int8-static"):
        builder_for("fp32").check(static, OptimizeRequest("fp32"))
    builder_for("fp32").check(get_card("yolo11n-int8"), OptimizeRequest("fp32"))
