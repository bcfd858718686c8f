"""``optimize()``: a model in, a new model file and its card out (fp16, int8-dynamic, int8-static, int4,
optionally with a dynamic batch dimension and/or a variable input size).

What to build is an ``OptimizeRequest`` (``request.py``); each precision is a builder in the registry
``precisions.PRECISIONS``; this module resolves the model, runs the builder, makes the input size and the batch
dynamic, proves each rewrite, and writes the file and its card atomically."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from spotdet.atomic import atomic_path
from spotdet.backends.onnx_tools import load_onnx, remove_initializer_inputs
from spotdet.hardware.compat import built_on_record
from spotdet.models.card import ModelCard, card_path_for, write_card_file
from spotdet.models.locations import cache_dir
from spotdet.models.store import sha256_of
from spotdet.optimize import dynamic_batch as dynb
from spotdet.optimize import dynamic_shape as dyns
from spotdet.optimize.errors import DynamicBatchError, DynamicShapeError, OptimizeError, PrecisionUnsupportedError
from spotdet.optimize.mixed import MixedInfo
from spotdet.optimize.precisions import PRECISIONS, Built, builder_for
from spotdet.optimize.precisions.base import BuildFn
from spotdet.optimize.precisions.int8_static import activation_bits_of
from spotdet.optimize.request import OptimizeRequest
from spotdet.optimize import trt_calibration

DYNBATCH_SUFFIX = "dynbatch"
DYNSHAPE_SUFFIX = "dyn"
MADE_BY = "made by spotdet optimize"

__all__ = ["PRECISIONS", "OptimizeRequest", "OptimizeResult", "optimize", "source_model", "variant_name"]


@dataclass
class OptimizeResult:
    path: Path
    card: ModelCard
    card_path: Path
    notes: list[str] = field(default_factory=list)  # things the user should know (speed caveats, skipped files)
    excluded_nodes: list[str] = field(default_factory=list)
    batch_check: dynb.BatchCheck | None = None
    reshapes_rewritten: int = 0
    mixed: MixedInfo | None = None  # int8-static with 8-bit activations: the float-activation selection
    shape_check: dyns.ShapeCheck | None = None
    shape_rewrite: dyns.ShapeRewrite | None = None


def source_model(model: str | Path, family: str | None = None) -> tuple[ModelCard, Path]:
    """(card, file) of a zoo name, a locally made variant's name, or a path to an .onnx file."""
    from spotdet.models.ref import resolve_model

    ref = resolve_model(model, family)
    return ref.card, ref.path


def variant_name(base: str, precision: str, dynamic_batch: bool, activation_bits: int = 8,
                 base_precision: str = "fp32", dynamic_shape: bool = False) -> str:
    """``yolox-nano-int8-static-a16-dyn-dynbatch``: the base name, then what differs from the base model."""
    parts = ([base] + ([precision] if precision != base_precision else []) + (["a16"] if activation_bits == 16 else [])
             + ([DYNSHAPE_SUFFIX] if dynamic_shape else []) + ([DYNBATCH_SUFFIX] if dynamic_batch else []))
    return "-".join(parts)


def default_output(parent: ModelCard, precision: str, dynamic_batch: bool, activation_bits: int = 8,
                   dynamic_shape: bool = False) -> Path:
    stem = Path(parent.file).stem
    tag = variant_name(stem, precision, dynamic_batch, activation_bits, parent.precision, dynamic_shape)
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
        stem = (Path(card.file).stem.removesuffix(f"-{DYNBATCH_SUFFIX}").removesuffix(f"-{DYNSHAPE_SUFFIX}")
                .removesuffix(f"-{card.precision}"))
        return replace(card, name=card.parent, file=f"{stem}.onnx", precision="fp32", parent=None)


def _as_request(request: OptimizeRequest | str | None, settings: dict) -> OptimizeRequest:
    """The request itself, or one made from the keyword form ``optimize(model, "int8-static", calib=...)``."""
    if isinstance(request, OptimizeRequest):
        if settings:
            raise TypeError(f"optimize() got a request and settings {sorted(settings)}: pass one or the other")
        return request
    if request is not None:
        if "precision" in settings:
            raise TypeError("optimize() got the precision twice")
        settings = {**settings, "precision": request}
    return OptimizeRequest(**settings)


def optimize(model: str | Path, request: OptimizeRequest | str | None = None, out: str | Path | None = None,
             family: str | None = None, progress: bool = True, **settings) -> OptimizeResult:
    """Build ``model`` as ``request`` says and write it with its card (default: into the model cache).

    The keyword form of earlier versions still works: ``optimize(model, "int8-static", calib=DIR, ...)``
    (or ``precision=``), with ``OptimizeRequest``'s fields as keywords.
    """
    request = _as_request(request, settings)
    card, src = source_model(model, family)
    precision, build = _build_fn(card, request)
    bits = 16 if request.activation_bits == 16 else activation_bits_of(card)
    root = _root(card)
    out_path = _output_path(out, src, default_output(root, precision, request.dynamic_batch, bits,
                                                     request.dynamic_shape))

    built = build(load_onnx(src), card, request, progress)
    graph, notes, rewritten, shape_rewrite = built.graph, list(built.notes), 0, None
    if request.dynamic_shape:
        if dyns.has_dynamic_shape(graph):
            notes.append("the input already has a symbolic height and width; verified as is")
        else:
            graph, shape_rewrite = dyns.make_shape_dynamic(graph)
    if request.dynamic_batch:
        if dynb.has_dynamic_batch(graph):
            notes.append("the input already has a dynamic batch dimension; verified as is")
        else:
            graph, rewritten = dynb.make_batch_dynamic(graph)
    check = shape_check = None
    with atomic_path(out_path) as tmp:
        save_model(graph, tmp)
        _check_loads(tmp)
        if precision == trt_calibration.TRT_INT8:  # TensorRT's INT8: the table of this very file, beside it
            trt_calibration.write_trt_calibration(tmp, card, request, out_path)
        if request.dynamic_shape:
            shape_check = _prove_shape(tmp, built.graph, card, precision, notes)
        if request.dynamic_batch:
            check = dynb.verify_batch(tmp, dynb.probe_batch(card.preprocess, tuple(card.input_size)))
            if not check.passed:
                raise DynamicBatchError(_batch_refusal(graph, check))
        card_notes = [f"{MADE_BY}: {precision}", *built.card_notes]
        if shape_check is not None:
            card_notes.append(f"dynamic shape: {shape_check.summary()}")
        if check is not None:
            card_notes.append(f"dynamic batch: {check.summary()}")
        name = variant_name(root.name, precision, request.dynamic_batch, bits, root.precision, request.dynamic_shape)
        derived = replace(root, name=name,
                          file=str(out_path), precision=precision, parent=root.name, url=None,
                          sha256=sha256_of(tmp), notes="; ".join(card_notes), built_on=built_on_record())
        card_path = write_card_file(derived, card_path_for(out_path))
    return OptimizeResult(out_path, derived, card_path, notes, built.excluded, check, rewritten, built.mixed_info,
                          shape_check, shape_rewrite)


def _prove_shape(path: Path, native: onnx.ModelProto, card: ModelCard, precision: str,
                 notes: list[str]) -> dyns.ShapeCheck:
    """Run the proof of ``dynamic_shape.verify_shape``; refuse (nothing is written) when any part fails."""
    reference = dyns.find_reference(card, native) if precision == card.precision else None
    image = dyns.probe_image()
    if image is None:
        notes.append("scikit-image is not installed: the check on a real photo at other sizes was skipped")
    check = dyns.verify_shape(path, native, card, reference, image)
    if not check.passed:
        raise DynamicShapeError(f"refused: the model cannot be proven to take other input sizes: {check.summary()}")
    return check


def _build_fn(card: ModelCard, request: OptimizeRequest) -> tuple[str, BuildFn]:
    """The precision to make and the function that makes it, once its preconditions have passed."""
    precision = request.precision or card.precision
    if precision == card.precision:
        _check_keep(card, request)
        return precision, _keep
    builder = trt_calibration.BUILDER if precision == trt_calibration.TRT_INT8 else builder_for(precision)
    builder.check(card, request)
    return precision, builder.build


def _check_keep(card: ModelCard, request: OptimizeRequest) -> None:
    """Keeping the precision: only rewrites (batch, input size) are left to do, and there are no activations to
    re-quantize."""
    if not (request.dynamic_batch or request.dynamic_shape):
        raise PrecisionUnsupportedError(f"{card.name} already is {card.precision}; ask for another --precision, "
                                        "--dynamic-batch or --dynamic-shape")
    if request.activation_bits != 8:
        raise PrecisionUnsupportedError(f"--activation-bits {request.activation_bits} applies when converting; "
                                        f"{card.name} keeps its precision ({card.precision}) and is only "
                                        f"{'batched' if request.dynamic_batch else 'made variable-size'}")


def _keep(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    """The model as it is (for the rewrites), with what its own card says about how it was built."""
    remove_initializer_inputs(graph)
    inherited = [part for part in card.notes.split("; ")
                 if part and not part.startswith((MADE_BY, "dynamic batch:", "dynamic shape:"))]
    return Built(graph, card_notes=inherited if card.parent else [])


def _output_path(out: str | Path | None, src: Path, default: Path) -> Path:
    out_path = Path(out).expanduser() if out else default
    if out_path.suffix != ".onnx":
        raise PrecisionUnsupportedError(f"-o {out_path}: the output must be an .onnx file")
    if out_path.resolve() == Path(src).resolve():
        raise PrecisionUnsupportedError(f"-o {out_path} is the input model; choose another output file")
    return out_path


def save_model(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.save_model(model, str(path))
    except (OSError, ValueError) as exc:
        raise OptimizeError(f"could not write {path} ({exc})") from None


def _check_loads(path: Path) -> None:
    from spotdet.backends.onnxruntime import ort_session

    try:
        ort_session(path, log_level=4)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise OptimizeError(f"the converted model does not load in ONNX Runtime ({first}); nothing was written") \
            from None


def _batch_refusal(graph: onnx.ModelProto, check: dynb.BatchCheck) -> str:
    reason = check.summary()
    if any(n.op_type == "DynamicQuantizeLinear" for n in graph.graph.node):
        reason += ("; dynamic INT8 computes one activation scale over the whole batch, so an image's result "
                   "depends on the other images in it. Batch an fp32 or int8-static model instead")
    return f"refused: the model cannot be proven batchable: {reason}"
