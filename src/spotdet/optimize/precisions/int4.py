"""int4: weight-only 4-bit (MatMulNBits) for graphs with MatMul/Gemm weights; refused for pure CNNs."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from spotdet.models.card import ModelCard
from spotdet.optimize.errors import OptimizeError, PrecisionUnsupportedError
from spotdet.optimize.graph_prep import prepare
from spotdet.optimize.precisions.base import Builder, Built
from spotdet.optimize.request import OptimizeRequest

INT4_MIN_WEIGHTS = 4096  # a MatMul/Gemm weight smaller than this is not worth 4-bit blocks


def matmul_weights(model: onnx.ModelProto) -> list[str]:
    """MatMul/Gemm nodes whose second input is a constant weight big enough for 4-bit blocks."""
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.ndim == 2 and w.size >= INT4_MIN_WEIGHTS:
                found.append(node.name or node.output[0])
    return found


def quantize_int4(model: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """Weight-only 4-bit (MatMulNBits) for graphs with MatMul/Gemm weights; refuses pure CNNs with the reason."""
    weights = matmul_weights(model)
    if not weights:
        convs = sum(n.op_type == "Conv" for n in model.graph.node)
        raise PrecisionUnsupportedError(
            f"int4 is not applicable to {card.name}: ONNX Runtime's 4-bit path is weight-only MatMulNBits for "
            f"MatMul/Gemm weights, and this graph has none worth 4-bit (its {convs} Conv layers hold the "
            "weights). Use int8-static for CNN detectors")
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        raise PrecisionUnsupportedError(f"int4 needs ONNX Runtime's MatMulNBits quantizer, which could not be "
                                        f"imported ({exc}); pip install 'spotdet[int4]'") from None
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=32, is_symmetric=True)
        quantizer.process()
        return quantizer.model.model
    except Exception as exc:
        raise OptimizeError(f"4-bit weight quantization failed ({type(exc).__name__}: {exc})") from None


def build(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    return Built(quantize_int4(prepare(graph), card))


BUILDER = Builder("int4", build)
