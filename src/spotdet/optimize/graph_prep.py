"""Graph preparation before conversion: drop initializers listed as inputs, upgrade the opset, and run ONNX
Runtime's quantization pre-processing (symbolic shape inference + basic graph optimisation).

Reading and cleaning graphs is the ONNX toolbox's job (``spotdet.backends.onnx_tools``); this module adds
only what conversion needs on top."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
from onnx import version_converter

from spotdet.backends.onnx_tools import onnx_opset, remove_initializer_inputs
from spotdet.optimize.errors import OptimizeError

#: per-channel QDQ needs QuantizeLinear/DequantizeLinear with an ``axis`` attribute: opset 13+.
MIN_QDQ_OPSET = 13


def upgrade_opset(model: onnx.ModelProto, target: int = MIN_QDQ_OPSET) -> onnx.ModelProto:
    """The model at opset ``target`` or later (unchanged if it already is)."""
    current = onnx_opset(model)
    if current >= target:
        return model
    try:
        upgraded = version_converter.convert_version(model, target)
        onnx.checker.check_model(upgraded)
    except Exception as exc:
        raise OptimizeError(f"could not upgrade the graph from opset {current} to {target} ({exc})") from None
    return upgraded


def prepare(model: onnx.ModelProto, min_opset: int = MIN_QDQ_OPSET, ort_preprocess: bool = True) -> onnx.ModelProto:
    """Clean graph for conversion: no initializer inputs, opset >= ``min_opset``, ORT pre-processing applied."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never modify the caller's proto
    remove_initializer_inputs(model)
    model = upgrade_opset(model, min_opset)
    if not ort_preprocess:
        return model
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ort.set_default_logger_severity(3)  # its "removing unused initializer" warnings are expected here

    with tempfile.TemporaryDirectory(prefix="spotdet-prep-") as tmp:
        out = Path(tmp) / "prepped.onnx"
        try:
            quant_pre_process(model, out, skip_symbolic_shape=False)
        except Exception as exc:
            raise OptimizeError(f"ONNX Runtime's quantization pre-processing failed ({type(exc).__name__}: {exc})") \
                from None
        return onnx.load(str(out))
