"""INT8 (dynamic and calibrated static QDQ) and weight-only INT4 with ONNX Runtime's quantization tools."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx
from onnx import numpy_helper

from spotdet.backends.onnx_tools import real_inputs
from spotdet.models.card import ModelCard
from spotdet.optimize.calibration import ImageCalibrationReader
from spotdet.optimize.errors import CalibrationError, OptimizeError, PrecisionUnsupportedError
from spotdet.optimize.head import ensure_node_names, head_nodes
from spotdet.optimize.mixed import DEFAULT_TARGET_DB, SELECTION_IMAGES, MixedInfo, keep_float, select_float_tensors

CALIB_METHODS = ("minmax", "entropy", "percentile")
DYNAMIC_NOTE = ("int8-dynamic quantizes activations at run time (DynamicQuantizeLinear + ConvInteger); ONNX "
                "Runtime's CPU provider runs ConvInteger slowly, so convolution networks are usually slower "
                "than fp32 this way; and its per-tensor 8-bit activations can wreck accuracy on depthwise "
                "backbones (yolox-nano and picodet-s-416 fall to about 0 mAP; see docs/optimize.md). "
                "Check with `spotdet eval`; prefer int8-static for CNN detectors")
INT4_MIN_WEIGHTS = 4096  # a MatMul/Gemm weight smaller than this is not worth 4-bit blocks


@dataclass
class QuantInfo:
    excluded: list[str] = field(default_factory=list)
    calib_images: int = 0
    skipped_images: list[str] = field(default_factory=list)
    mixed: MixedInfo | None = None  # the automatic float-activation selection, when it ran


def _save_and_load(quantize: Callable[[Path], None]) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="spotdet-quant-") as tmp:
        out = Path(tmp) / "q.onnx"
        quantize(out)
        return onnx.load(str(out))


def quantize_dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(out: Path) -> None:
        try:
            quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True)
        except Exception as exc:
            raise OptimizeError(f"dynamic INT8 quantization failed ({type(exc).__name__}: {exc})") from None

    return _save_and_load(run)


def _calibrate_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if name not in methods:
        raise PrecisionUnsupportedError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {name!r}")
    return methods[name]


def quantize_static_int8(model: onnx.ModelProto, card: ModelCard, calib_files: list[Path], method: str = "minmax",
                         exclude: list[str] | None = None, progress: bool = True,
                         activation_bits: int = 8, mixed: bool = True,
                         target_db: float = DEFAULT_TARGET_DB) -> tuple[onnx.ModelProto, QuantInfo]:
    """QDQ, per-channel INT8 weights, INT8 activations calibrated on ``calib_files``.

    ``activation_bits=16`` keeps INT8 weights but calibrates 16-bit activations (A16W8, opset 21 QDQ):
    for networks whose activations have outlier channels (YOLOX-nano, PicoDet) it recovers fp32 accuracy,
    but ONNX Runtime's CPU provider has no fused 16-bit kernels, so it runs no faster than fp32.

    ``exclude`` = None keeps the family's detection-head nodes in float (see ``head.py``); a list (even
    empty) replaces that choice.

    ``mixed`` (8-bit activations only): afterwards keep in float the fewest activation tensors needed for
    the outputs on a few calibration images to agree with fp32 to ``target_db`` (see ``mixed.py``).
    QDQKeepRemovableActivations keeps Relu/Clip nodes in the graph: otherwise ORT deletes them and lets the
    activation's quantization range do the clipping, which would be lost when that tensor stays float.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    calibrate_method = _calibrate_method(method)
    if activation_bits not in (8, 16):
        raise PrecisionUnsupportedError(f"activation bits must be 8 or 16, got {activation_bits}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    ensure_node_names(model)
    names = {n.name for n in model.graph.node}
    if exclude is None:
        excluded = head_nodes(model, card.family)
    else:
        unknown = [n for n in exclude if n not in names]
        if unknown:
            raise PrecisionUnsupportedError(f"--exclude-nodes: no node named {', '.join(unknown[:5])} in the graph")
        excluded = list(exclude)
    input_name = real_inputs(model)[0].name
    bar, task = _progress(progress, len(calib_files))
    info = QuantInfo(excluded=excluded)
    with bar or nullcontext():
        reader = ImageCalibrationReader(
            calib_files, card, input_name,
            on_image=(lambda: bar.update(task, advance=1)) if bar else None)
        info.calib_images, info.skipped_images = len(reader), reader.skipped
        if bar:
            bar.update(task, total=len(reader))
        extra = {"CalibStridedMinMax": reader.stride(), "ActivationSymmetric": False, "WeightSymmetric": True,
                 "QDQKeepRemovableActivations": True}

        def run(out: Path) -> None:
            try:
                # a copy: quantize_static rewrites a ModelProto's weights as external data in its temp dir
                quantize_static(onnx.ModelProto.FromString(model.SerializeToString()), out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8 if activation_bits == 8 else QuantType.QUInt16,
                                weight_type=QuantType.QInt8,
                                nodes_to_exclude=excluded, calibrate_method=calibrate_method, extra_options=extra)
            except (CalibrationError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise OptimizeError(f"static INT8 quantization failed ({type(exc).__name__}: {exc})") from None

        quantized = _save_and_load(run)
    if mixed and activation_bits == 8:
        feeds = [{input_name: t} for t in reader.tensors[:SELECTION_IMAGES]]
        info.mixed = select_float_tensors(model, quantized, feeds, target_db)
        quantized = keep_float(quantized, info.mixed.float_tensors)
    return quantized, info


def _progress(enabled: bool, total: int):
    if not enabled:
        return None, None
    from spotdet.progress import count_progress

    bar = count_progress()
    return bar, bar.add_task("calibrating", total=total)


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
                                        f"imported ({exc}); pip install onnx-ir") from None
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=32, is_symmetric=True)
        quantizer.process()
        return quantizer.model.model
    except Exception as exc:
        raise OptimizeError(f"4-bit weight quantization failed ({type(exc).__name__}: {exc})") from None
