"""``optimize()``: a model in, a new model file and its card out (fp16, int8-dynamic, int8-static, int4,
optionally with a dynamic batch dimension)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from spotdet.models.card import ModelCard, card_path_for, write_card_file
from spotdet.models.locations import cache_dir
from spotdet.models.store import sha256_of
from spotdet.optimize.errors import DynamicBatchError, OptimizeError, PrecisionUnsupportedError
from spotdet.backends.onnx_tools import load_onnx, remove_initializer_inputs
from spotdet.optimize.graph_prep import prepare
from spotdet.optimize.writer import atomic_model_file, save_model

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static", "int4")
QUANTIZED = ("int8-dynamic", "int8-static", "int4")
DYNBATCH_SUFFIX = "dynbatch"


@dataclass
class OptimizeResult:
    path: Path
    card: ModelCard
    card_path: Path
    notes: list[str] = field(default_factory=list)  # things the user should know (speed caveats, skipped files)
    excluded_nodes: list[str] = field(default_factory=list)
    batch_check: object | None = None  # dynamic_batch.BatchCheck
    reshapes_rewritten: int = 0
    mixed: object | None = None  # mixed.MixedInfo for int8-static with 8-bit activations


def source_model(model: str | Path, family: str | None = None) -> tuple[ModelCard, Path]:
    """(card, file) of a zoo name, a locally made variant's name, or a path to an .onnx file."""
    from spotdet.models.ref import resolve_model

    ref = resolve_model(model, family)
    return ref.card, ref.path


def variant_name(base: str, precision: str, dynamic_batch: bool, activation_bits: int = 8) -> str:
    parts = ([base] + ([precision] if precision != "fp32" else []) + (["a16"] if activation_bits == 16 else [])
             + ([DYNBATCH_SUFFIX] if dynamic_batch else []))
    return "-".join(parts)


def default_output(parent: ModelCard, precision: str, dynamic_batch: bool, activation_bits: int = 8) -> Path:
    stem = Path(parent.file).stem
    tag = variant_name(stem, precision, dynamic_batch, activation_bits)
    return cache_dir() / f"{tag}.onnx"


def _root(card: ModelCard) -> ModelCard:
    """A locally made variant names the model it came from; variants of it are named after that one."""
    if not card.parent:
        return card
    from spotdet.models.card import get_card
    from spotdet.errors import UsageError

    try:
        return get_card(card.parent)
    except UsageError:  # the parent's card is gone: keep this card's data under the parent's name
        stem = Path(card.file).stem.removesuffix(f"-{DYNBATCH_SUFFIX}").removesuffix(f"-{card.precision}")
        return replace(card, name=card.parent, file=f"{stem}.onnx", precision="fp32", parent=None)


def optimize(model: str | Path, precision: str | None = None, out: str | Path | None = None,
             calib: str | Path | None = None, calib_method: str = "minmax", calib_count: int = 100,
             dynamic_batch: bool = False, exclude_nodes: list[str] | None = None, family: str | None = None,
             progress: bool = True, activation_bits: int = 8, mixed: bool = True,
             target_db: float | None = None) -> OptimizeResult:
    """Build ``model`` at ``precision`` (None = keep it), optionally batchable, and write it with its card.

    int8-static with 8-bit activations keeps the activations that 8-bit ruins in float unless ``mixed`` is
    False (``target_db``: the output agreement with fp32 it aims for; see ``optimize/mixed.py``).
    """
    from spotdet.optimize.mixed import DEFAULT_TARGET_DB

    from spotdet.optimize import dynamic_batch as dynb
    from spotdet.optimize import fp16, quantize
    from spotdet.optimize.calibration import calibration_images

    card, src = source_model(model, family)
    precision = precision or card.precision
    if precision not in PRECISIONS:
        raise PrecisionUnsupportedError(f"precision must be one of {', '.join(PRECISIONS[1:])}, got {precision!r}")
    changes_precision = precision != card.precision
    if not changes_precision and not dynamic_batch:
        raise PrecisionUnsupportedError(f"{card.name} already is {card.precision}; ask for another --precision "
                                        "or --dynamic-batch")
    if changes_precision and card.precision != "fp32":
        raise PrecisionUnsupportedError(
            f"{card.name} is {card.precision} already; converting it to {precision} would compound the error. "
            "Start from the fp32 model")
    if precision == "int8-static" and changes_precision and calib is None:
        raise PrecisionUnsupportedError("int8-static needs calibration images: --calib DIR, a folder of images "
                                        "like the ones the model will see (100 or so are enough)")
    if activation_bits != 8 and precision != "int8-static":
        raise PrecisionUnsupportedError("--activation-bits 16 applies to int8-static only")
    calib_files = calibration_images(calib, calib_count) if precision == "int8-static" and changes_precision else []

    graph = load_onnx(src)
    notes: list[str] = []
    result_excluded: list[str] = []
    mixed_info = None
    if not changes_precision:
        remove_initializer_inputs(graph)
    elif precision == "fp16":
        graph = fp16.to_fp16(prepare(graph, ort_preprocess=False))
        notes.append(fp16.CPU_NOTE)
    elif precision == "int8-dynamic":
        graph = quantize.quantize_dynamic_int8(prepare(graph))
        notes.append(quantize.DYNAMIC_NOTE)
    elif precision == "int8-static":
        graph, info = quantize.quantize_static_int8(prepare(graph, 21 if activation_bits == 16 else 13), card, calib_files, calib_method,
                                                    exclude_nodes, progress, activation_bits, mixed,
                                                    DEFAULT_TARGET_DB if target_db is None else target_db)
        result_excluded = info.excluded
        mixed_info = info.mixed
        notes.append(f"calibrated on {info.calib_images} images from {calib} ({calib_method}, "
                     f"{activation_bits}-bit activations); "
                     f"{len(info.excluded)} head node(s) kept in float")
        if mixed_info is not None:
            notes.append(_mixed_note(mixed_info))
        notes.extend(f"calibration skipped {s}" for s in info.skipped_images[:5])
    elif precision == "int4":
        graph = quantize.quantize_int4(prepare(graph), card)

    rewritten = 0
    if dynamic_batch:
        if dynb.has_dynamic_batch(graph):
            notes.append("the input already has a dynamic batch dimension; verified as is")
        else:
            graph, rewritten = dynb.make_batch_dynamic(graph)

    root = _root(card)
    out_path = Path(out).expanduser() if out else default_output(root, precision, dynamic_batch, _act_bits(card, activation_bits))
    if out_path.suffix != ".onnx":
        raise PrecisionUnsupportedError(f"-o {out_path}: the output must be an .onnx file")
    if out_path.resolve() == Path(src).resolve():
        raise PrecisionUnsupportedError(f"-o {out_path} is the input model; choose another output file")
    check = None
    with atomic_model_file(out_path) as tmp:
        save_model(graph, tmp)
        _check_loads(tmp)
        if dynamic_batch:
            check = dynb.verify_batch(tmp, dynb.probe_batch(card.preprocess, tuple(card.input_size)))
            if not check.passed:
                raise DynamicBatchError(_batch_refusal(graph, check))
        derived = replace(
            root, name=variant_name(root.name, precision, dynamic_batch, _act_bits(card, activation_bits)), file=str(out_path), precision=precision,
            parent=root.name, url=None, sha256=sha256_of(tmp),
            notes=_card_notes(precision, dynamic_batch, calib, calib_method, result_excluded, check,
                             _act_bits(card, activation_bits), mixed_info))
        card_path = write_card_file(derived, card_path_for(out_path))
    return OptimizeResult(out_path, derived, card_path, notes, result_excluded, check, rewritten, mixed_info)


def _mixed_note(m) -> str:
    text = (f"mixed precision: {len(m.float_tensors)} of {m.candidates} activation tensors kept in float; output "
            f"SQNR vs fp32 on calibration images {m.start_db:.1f} dB -> {m.final_db:.1f} dB (target {m.target_db:.1f})")
    if not m.reached:
        text += ("; the target was NOT reached within the cap on float tensors: expect an accuracy loss, "
                 "or use --activation-bits 16")
    return text


def _check_loads(path: Path) -> None:
    from spotdet.backends.onnxruntime import ort_session

    try:
        ort_session(path, log_level=4)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise OptimizeError(f"the converted model does not load in ONNX Runtime ({first}); nothing was written") \
            from None


def _batch_refusal(graph: onnx.ModelProto, check) -> str:
    reason = check.describe()
    if any(n.op_type == "DynamicQuantizeLinear" for n in graph.graph.node):
        reason += ("; dynamic INT8 computes one activation scale over the whole batch, so an image's result "
                   "depends on the other images in it. Batch an fp32 or int8-static model instead")
    return f"refused: the model cannot be proven batchable: {reason}"


def _act_bits(card: ModelCard, requested: int) -> int:
    """16 when asked for, or when the source is itself an A16W8 model (so its batched copy keeps the tag)."""
    return 16 if requested == 16 or "A16W8" in card.notes else 8


def _card_notes(precision: str, dynamic_batch: bool, calib, method: str, excluded: list[str], check,
                activation_bits: int = 8, mixed_info=None) -> str:
    parts = [f"made by spotdet optimize: {precision}"]
    if activation_bits == 16:
        parts.append("A16W8 (16-bit activations, 8-bit weights)")
    if precision == "int8-static" and calib is not None:
        parts.append(f"QDQ per-channel, calibrated on {Path(str(calib)).name} ({method}), "
                     f"{len(excluded)} head nodes in float")
    if mixed_info is not None:
        parts.append(f"{len(mixed_info.float_tensors)}/{mixed_info.candidates} activations in float "
                     f"(output SQNR {mixed_info.final_db:.1f} dB)")
    if dynamic_batch and check is not None:
        parts.append(f"dynamic batch: {check.describe()}")
    return "; ".join(parts)
