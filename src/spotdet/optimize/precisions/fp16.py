"""fp16: weights and activations in half precision, float32 inputs and outputs kept so callers do not change."""

from __future__ import annotations

import onnx

from spotdet.backends.onnx_tools import toposort
from spotdet.models.card import ModelCard
from spotdet.optimize.errors import OptimizeError
from spotdet.optimize.graph_prep import prepare
from spotdet.optimize.precisions.base import Builder, Built
from spotdet.optimize.request import OptimizeRequest

CPU_NOTE = ("fp16 on CPU: ONNX Runtime's CPU provider has few fp16 kernels and inserts casts around the "
            "rest, so fp16 halves the file and weight memory but does not make inference faster on CPU; "
            "its speed-up is on GPUs (CUDA/TensorRT)")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise OptimizeError(f"fp16 conversion failed ({type(exc).__name__}: {exc})") from None
    toposort(converted.graph)  # the converter appends its input casts at the end of the node list
    return converted


def build(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    return Built(to_fp16(prepare(graph, ort_preprocess=False)), notes=[CPU_NOTE])


BUILDER = Builder("fp16", build)
