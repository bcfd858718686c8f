"""int8-dynamic: per-channel INT8 weights, activations quantized at run time (no calibration)."""

from __future__ import annotations

from pathlib import Path

import onnx

from spotdet.models.card import ModelCard
from spotdet.optimize.errors import OptimizeError
from spotdet.optimize.graph_prep import prepare
from spotdet.optimize.precisions.base import Builder, Built, quantized_copy
from spotdet.optimize.request import OptimizeRequest

DYNAMIC_NOTE = ("int8-dynamic quantizes activations at run time (DynamicQuantizeLinear + ConvInteger); ONNX "
                "Runtime's CPU provider runs ConvInteger slowly, so convolution networks are usually slower "
                "than fp32 this way; and its per-tensor 8-bit activations can wreck accuracy on depthwise "
                "backbones (yolox-nano and picodet-s-416 fall to about 0 mAP; see docs/optimize.md). "
                "Check with `spotdet eval`; prefer int8-static for CNN detectors")


def quantize_dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(out: Path) -> None:
        try:
            quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True)
        except Exception as exc:
            raise OptimizeError(f"dynamic INT8 quantization failed ({type(exc).__name__}: {exc})") from None

    return quantized_copy(run)


def build(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    return Built(quantize_dynamic_int8(prepare(graph)), notes=[DYNAMIC_NOTE])


BUILDER = Builder("int8-dynamic", build)
