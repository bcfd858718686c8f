"""int8-static: QDQ, per-channel INT8 weights, activations calibrated on the user's images (8 or 16 bits),
the detection head and (with 8-bit activations) the activations 8 bits ruin kept in float."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from spotdet.backends.onnx_tools import real_inputs
from spotdet.models.card import ModelCard
from spotdet.optimize.calibration import ImageCalibrationReader, calibration_images
from spotdet.optimize.errors import CalibrationError, OptimizeError, PrecisionUnsupportedError
from spotdet.optimize.graph_prep import MIN_QDQ_OPSET, prepare
from spotdet.optimize.head import ensure_node_names, head_nodes
from spotdet.optimize.mixed import DEFAULT_TARGET_DB, SELECTION_IMAGES, MixedInfo, keep_float, select_float_tensors
from spotdet.optimize.precisions.base import Builder, Built, quantized_copy
from spotdet.optimize.request import OptimizeRequest

CALIB_METHODS = ("minmax", "entropy", "percentile")
A16_OPSET = 21  # 16-bit QuantizeLinear/DequantizeLinear
A16_TAG = "A16W8"  # in the card notes of a model with 16-bit activations; its batched copy keeps the "-a16" name


@dataclass
class QuantInfo:
    excluded: list[str] = field(default_factory=list)
    calib_images: int = 0
    skipped_images: list[str] = field(default_factory=list)
    mixed: MixedInfo | None = None  # the automatic float-activation selection, when it ran


def activation_bits_of(card: ModelCard) -> int:
    """16 for a model this builder made with 16-bit activations (its card says so), else 8."""
    return 16 if A16_TAG in card.notes else 8


def calibrate_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if name not in methods:
        raise PrecisionUnsupportedError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {name!r}")
    return methods[name]


def quantize_static_int8(model: onnx.ModelProto, card: ModelCard, calib_files: list[Path], method: str = "minmax",
                         exclude: list[str] | tuple[str, ...] | None = None, progress: bool = True,
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

    method_id = calibrate_method(method)
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
                quantize_static(onnx.ModelProto.FromString(model.SerializeToString()), out, reader,
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8 if activation_bits == 8 else QuantType.QUInt16,
                                weight_type=QuantType.QInt8,
                                nodes_to_exclude=excluded, calibrate_method=method_id, extra_options=extra)
            except (CalibrationError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise OptimizeError(f"static INT8 quantization failed ({type(exc).__name__}: {exc})") from None

        quantized = quantized_copy(run)
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


def requires(card: ModelCard, request: OptimizeRequest) -> None:
    """Calibration images, and a calibration method ONNX Runtime has."""
    if request.calib is None:
        raise PrecisionUnsupportedError("int8-static needs calibration images: --calib DIR, a folder of images "
                                        "like the ones the model will see (100 or so are enough)")
    calibrate_method(request.calib_method)


def build(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    files = calibration_images(request.calib, request.calib_count)
    bits = request.activation_bits
    graph, info = quantize_static_int8(
        prepare(graph, A16_OPSET if bits == 16 else MIN_QDQ_OPSET), card, files, request.calib_method,
        request.exclude_nodes, progress, bits, request.mixed, request.target_db)
    notes = [f"calibrated on {info.calib_images} images from {request.calib} ({request.calib_method}, "
             f"{bits}-bit activations); {len(info.excluded)} head node(s) kept in float"]
    card_notes = [f"{A16_TAG} (16-bit activations, 8-bit weights)"] if bits == 16 else []
    card_notes.append(f"QDQ per-channel, calibrated on {request.calib.name} ({request.calib_method}), "
                      f"{len(info.excluded)} head nodes in float")
    if info.mixed is not None:
        notes.append(_mixed_note(info.mixed))
        card_notes.append(f"{len(info.mixed.float_tensors)}/{info.mixed.candidates} activations in float "
                          f"(output SQNR {info.mixed.final_db:.1f} dB)")
    notes.extend(f"calibration skipped {s}" for s in info.skipped_images[:5])
    return Built(graph, notes, info.excluded, info.mixed, card_notes)


def _mixed_note(m: MixedInfo) -> str:
    text = (f"mixed precision: {len(m.float_tensors)} of {m.candidates} activation tensors kept in float; output "
            f"SQNR vs fp32 on calibration images {m.start_db:.1f} dB -> {m.final_db:.1f} dB (target {m.target_db:.1f})")
    if not m.reached:
        text += ("; the target was NOT reached within the cap on float tensors: expect an accuracy loss, "
                 "or use --activation-bits 16")
    return text


BUILDER = Builder("int8-static", build, activation_bits=(8, 16), requires=requires)
