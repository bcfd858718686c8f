"""Make a static-size graph take any input height and width (multiples of the largest stride), then prove it.

Renaming the input's height and width is not enough: exporters bake the grid sizes of the native input into
the graph. What the zoo files hold, and what each becomes here:

- Reshape shape constants (channel shuffles ``[1, 2, 48, 52, 52]``, attention ``[1, 128, 20, 20]``,
  FastestDet's ``[2, -1, 24, 44, 44]``). The source and target shapes are aligned into groups of dimensions
  with equal products; a dimension copied from the source becomes 0 ("copy", when at the same position) or is
  read from ``Shape(source)``; dimensions merged into one become -1 or a product of ``Shape(source)`` entries,
  and a flattened grid split back into (h, w) is read from the nearest upstream feature map of that size. All
  three are exact at the native size; channel splits (96 -> 2 x 48) stay constant.
- Resize ``sizes`` become the equivalent ``scales`` (the ratio is what the layer means).
- Per-cell constants of anchor-free heads (Ultralytics' anchor points and stride row, [1, 2, N] and [1, N])
  are rebuilt from the ``Shape`` of each level's feature map, after checking they equal the grid that
  rebuild produces at the native size; any other per-cell constant is refused with its name.

The proof (``verify_shape``) runs the files: (a) the native size against the unmodified graph, (b) another size
against a file exported at that size from the same weights, where the zoo has one, and (c) non-square sizes on
a real photo, where the strongest native-size detection must be found again. A variant that fails is not
written (``optimize()``).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from spotdet.backends.onnx_tools import Dim, constant_values, dims, inferred_dims, real_inputs, toposort
from spotdet.models.card import ModelCard
from spotdet.optimize.dynamic_batch import compare_outputs, ort_reason
from spotdet.optimize.errors import DynamicShapeError

HEIGHT_DIM, WIDTH_DIM = "height", "width"
#: non-square probe sizes, as (rows, cols) of strides added to the native size: 320x416 and 480x352 at 416
PROBE_STEPS = ((-3, 0), (2, -2))
PROBE_CONF = 0.25
PROBE_MIN_IOU = 0.5
ANCHOR_OFFSET = 0.5  # Ultralytics' make_anchors(grid_cell_offset=0.5): anchor points are cell centres
_SEARCH_LIMIT = 400  # tensors visited looking upstream for a feature map of a given size


@dataclass
class ShapeRewrite:
    """What ``make_shape_dynamic`` changed."""

    reshapes: int = 0
    resizes: int = 0
    grids: int = 0  # per-cell constants now computed from feature-map shapes

    def summary(self) -> str:
        return (f"{self.reshapes} Reshape shape(s), {self.resizes} Resize size(s), {self.grids} per-cell "
                "constant(s) rewritten")


def has_dynamic_shape(model: onnx.ModelProto) -> bool:
    """Whether the single image input already has a symbolic height or width (e.g. ``dynamic=True`` exports)."""
    inp = real_inputs(model)
    shape = dims(inp[0]) if len(inp) == 1 else []
    return len(shape) == 4 and not (isinstance(shape[2], int) and isinstance(shape[3], int))


def _static(shape: list[Dim] | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def align_dims(src: list[int], dst: list[int]) -> list[tuple[list[int], list[int]]] | None:
    """Split a reshape into groups (source axes, target axes) with equal products, in order; None if impossible.

    ``[1, 96, 52, 52] -> [1, 2, 48, 52, 52]`` gives ``([0], [0]), ([1], [1, 2]), ([2], [3]), ([3], [4])``.
    """
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        gi, gj, pi, pj = [], [], 1, 1
        if i < len(src):
            gi, pi, i = [i], src[i], i + 1
        if j < len(dst):
            gj, pj, j = [j], dst[j], j + 1
        while pi != pj:
            if pi < pj and i < len(src):
                gi.append(i)
                pi, i = pi * src[i], i + 1
            elif pj < pi and j < len(dst):
                pj, j = pj * dst[j], j + 1
                gj.append(j - 1)
            else:
                return None
        groups.append((gi, gj))
    return groups


class _GraphEdit:
    """Adds shape-computing nodes to a graph: one ``Shape`` per tensor, named initializers, fresh names."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, list[Dim]], consts: dict[str, np.ndarray]):
        self.model, self.shapes, self.consts = model, shapes, consts
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self._shape_of: dict[str, str] = {}
        self._counter = itertools.count()

    def name(self, hint: str) -> str:
        return f"dynshape/{hint}_{next(self._counter)}"

    def const(self, values: np.ndarray, hint: str = "const") -> str:
        name = self.name(hint)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(values), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op.lower())
        self.model.graph.node.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def shape(self, tensor: str) -> str:
        if tensor not in self._shape_of:
            self._shape_of[tensor] = self.node("Shape", [tensor])
        return self._shape_of[tensor]

    def dims_of(self, tensor: str, axes: list[int], scalar: bool = False) -> str:
        """``Shape(tensor)[axes]`` as a 1-D int64 tensor (a 0-D one for a single axis with ``scalar``)."""
        index = np.int64(axes[0]) if scalar else np.asarray(axes, np.int64)
        return self.node("Gather", [self.shape(tensor), self.const(index, "axes")], axis=0)

    def feature_map(self, start: str, hw: list[int]) -> str | None:
        """The nearest tensor upstream of ``start`` that is an NCHW map of height and width ``hw``.

        A flattened grid split back into (h, w) takes its size from there: at any input size, maps at the
        same depth of the network have the same size.
        """
        seen, queue = {start}, deque([start])
        while queue and len(seen) < _SEARCH_LIMIT:
            tensor = queue.popleft()
            shape = self.shapes.get(tensor)
            if tensor not in self.consts and _static(shape) and len(shape) == 4 and list(shape[2:]) == hw:
                return tensor
            producer = self.producers.get(tensor)
            for inp in producer.input if producer is not None else ():
                if inp and inp not in seen and inp not in self.consts:
                    seen.add(inp)
                    queue.append(inp)
        return None


@dataclass
class _Piece:
    """Part of a Reshape target: constant values, or dimensions read from a tensor's shape at run time."""

    values: list[int]
    source: str | None = None  # tensor whose Shape gives the values; None: constant
    axes: list[int] = field(default_factory=list)
    product: bool = False  # the product of those dimensions (merged axes)
    at: int = -1  # the target position of a single copied dimension

    def fixed(self, allowzero: bool) -> list[int] | None:
        """The values as a constant Reshape understands exactly at every size, or None if none exists."""
        if self.source is None:
            return self.values
        if not self.product and len(self.axes) == 1 and self.axes[0] == self.at and not allowzero:
            return [0]  # "copy the source's dimension"
        return None

    def build(self, edit: _GraphEdit) -> str:
        if self.source is None:
            return edit.const(np.asarray(self.values, np.int64), "shape")
        got = edit.dims_of(self.source, self.axes)
        return edit.node("ReduceProd", [got], keepdims=1) if self.product else got


def _reshape_pieces(edit: _GraphEdit, node: onnx.NodeProto, src: list[int], dst: list[int]) -> list[_Piece]:
    groups = align_dims(src, dst)
    if groups is None:
        raise DynamicShapeError(f"Reshape {node.name or node.output[0]} maps {src} to {dst}, which is not a "
                                "regrouping of dimensions; its sizes cannot be traced")
    data, pieces = node.input[0], []
    for gi, gj in groups:
        values = [dst[j] for j in gj]
        if not gj:
            continue
        if not gi:
            pieces.append(_Piece(values))
        elif len(gj) == 1:
            pieces.append(_Piece(values, data, gi, product=len(gi) > 1, at=gj[0]))
        else:
            feature = edit.feature_map(data, values) if len(gi) == 1 and len(values) == 2 else None
            pieces.append(_Piece(values, feature, [2, 3]) if feature else _Piece(values))
    return pieces


def _rewrite_reshape(edit: _GraphEdit, node: onnx.NodeProto) -> bool:
    """Give one Reshape a target shape that follows its input's size; True if it changed."""
    if len(node.input) < 2 or node.input[1] not in edit.consts or node.input[0] in edit.consts:
        return False  # computed at run time already, or reshaping weights
    src, dst = edit.shapes.get(node.input[0]), edit.shapes.get(node.output[0])
    if not (_static(src) and _static(dst)):
        raise DynamicShapeError(f"shape inference cannot tell the shapes around Reshape "
                                f"{node.name or node.output[0]} ({src} -> {dst}); its sizes cannot be traced")
    allowzero = any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
    pieces = _reshape_pieces(edit, node, src, dst)
    fixed = [p.fixed(allowzero) for p in pieces]
    loose = [k for k, f in enumerate(fixed) if f is None]
    if len(loose) == 1 and len(pieces[loose[0]].values) == 1:
        fixed[loose[0]], loose = [-1], []
    if not loose:
        target = np.asarray([v for f in fixed for v in f], np.int64)
        if np.array_equal(target, edit.consts[node.input[1]]):
            return False
        node.input[1] = edit.const(target, "shape")
        return True
    node.input[1] = edit.node("Concat", [p.build(edit) for p in pieces], "shape", axis=0)
    return True


def _rewrite_resize(edit: _GraphEdit, node: onnx.NodeProto) -> bool:
    """A Resize to fixed ``sizes`` becomes the same Resize by ``scales`` (exact where the ratio is what was meant)."""
    if len(node.input) < 4 or not node.input[3] or node.input[3] not in edit.consts:
        return False
    sizes, src = edit.consts[node.input[3]], edit.shapes.get(node.input[0])
    if not _static(src) or len(src) != len(sizes):
        raise DynamicShapeError(f"Resize {node.name or node.output[0]} has fixed sizes {sizes.tolist()} on an "
                                "input of unknown shape; its scale cannot be traced")
    scales = np.asarray(sizes, np.float64) / np.asarray(src, np.float64)
    node.input[2] = edit.const(scales.astype(np.float32), "scales")
    if not node.input[1]:
        node.input[1] = edit.const(np.zeros(0, np.float32), "roi")
    del node.input[3]
    return True


def _head_levels(edit: _GraphEdit) -> list[tuple[str, int, int]]:
    """(feature map, h, w) per level of a head that flattens NCHW maps and concatenates them cell-wise."""
    for node in edit.model.graph.node:
        if node.op_type != "Concat" or len(node.input) < 2:
            continue
        levels = []
        for inp in node.input:
            producer = edit.producers.get(inp)
            src = edit.shapes.get(producer.input[0]) if producer is not None else None
            out = edit.shapes.get(inp)
            if (producer is None or producer.op_type != "Reshape" or not _static(src) or not _static(out)
                    or len(src) != 4 or len(out) != 3 or out[-1] != src[2] * src[3]):
                break
            levels.append((producer.input[0], src[2], src[3]))
        else:
            return levels
    return []


def _expected_grids(levels: list[tuple[str, int, int]], native_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    anchors, strides = [], []
    for _, h, w in levels:
        xs, ys = np.meshgrid(np.arange(w) + ANCHOR_OFFSET, np.arange(h) + ANCHOR_OFFSET)
        anchors.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(h * w, native_hw[0] / h))
    return {"anchors": np.concatenate(anchors, 1), "strides": np.concatenate(strides)[None]}


def _build_grid(edit: _GraphEdit, kind: str, levels: list[tuple[str, int, int]], native_hw: tuple[int, int],
                like: np.ndarray) -> str:
    """Anchor points [2, N] or the stride row [1, N] from each level's Shape, reshaped and typed like ``like``."""
    zero, one = edit.const(np.int64(0)), edit.const(np.int64(1))
    rows = []
    for feature, h, _ in levels:
        hw = edit.dims_of(feature, [2, 3])
        if kind == "strides":
            count = edit.node("ReduceProd", [hw], keepdims=1)
            stride = edit.const(np.asarray([native_hw[0] // h], np.int64), "stride")
            rows.append(edit.node("Reshape", [edit.node("Expand", [stride, count]),
                                              edit.const(np.asarray([1, -1], np.int64))]))
            continue
        flat = edit.const(np.asarray([1, -1], np.int64))
        xs = edit.node("Range", [zero, edit.dims_of(feature, [3], scalar=True), one])
        ys = edit.node("Range", [zero, edit.dims_of(feature, [2], scalar=True), one])
        x_grid = edit.node("Expand", [edit.node("Reshape", [xs, flat]), hw])
        y_grid = edit.node("Expand", [edit.node("Reshape", [ys, edit.const(np.asarray([-1, 1], np.int64))]), hw])
        rows.append(edit.node("Concat", [edit.node("Reshape", [x_grid, flat]), edit.node("Reshape", [y_grid, flat])],
                              axis=0))
    grid = edit.node("Cast", [edit.node("Concat", rows, axis=1)], to=onnx.TensorProto.FLOAT)
    if kind == "anchors":
        grid = edit.node("Add", [grid, edit.const(np.float32(ANCHOR_OFFSET))])
    if like.dtype != np.float32:
        grid = edit.node("Cast", [grid], to=helper.np_dtype_to_tensor_dtype(like.dtype))
    return edit.node("Reshape", [grid, edit.const(np.asarray([*like.shape[:-1], -1], np.int64))], kind)


def _rewrite_grids(edit: _GraphEdit, native_hw: tuple[int, int]) -> int:
    """Replace per-cell constants (one value per output cell) of a flatten-and-concatenate head."""
    levels = _head_levels(edit)
    if not levels:
        return 0
    cells = sum(h * w for _, h, w in levels)
    expected = _expected_grids(levels, native_hw)
    used = {inp for node in edit.model.graph.node if node.op_type != "Reshape" for inp in node.input}
    replaced: dict[str, str] = {}
    for name, value in edit.consts.items():
        if name not in used or value.ndim == 0 or value.shape[-1] != cells or value.size > 2 * cells:
            continue
        kind = next((k for k, want in expected.items() if value.size == want.size
                     and np.allclose(value.reshape(want.shape).astype(np.float64), want, atol=1e-3)), None)
        if kind is None:
            raise DynamicShapeError(f"constant {name} {list(value.shape)} holds one value per output cell "
                                    f"({cells} at the native size) and is not an anchor grid or stride row this "
                                    "rewrite can rebuild")
        replaced[name] = _build_grid(edit, kind, levels, native_hw, value)
    for node in edit.model.graph.node:
        for k, inp in enumerate(node.input):
            if inp in replaced:
                node.input[k] = replaced[inp]
    return len(replaced)


def _relax_outputs(model: onnx.ModelProto) -> None:
    """Output dimensions that shape inference cannot prove fixed (cell counts, grid sizes) become unknown;
    the batch dimension is left as it was (``dynamic_batch`` owns it)."""
    declared = {out.name: dims(out) for out in model.graph.output}
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim[1:]:
            dim.Clear()
    try:
        inferred = inferred_dims(model)
    except Exception:  # noqa: BLE001 - best effort: an unknown dimension is always valid
        inferred = {}
    for out in model.graph.output:
        proven = inferred.get(out.name) or []
        for k, dim in enumerate(out.type.tensor_type.shape.dim[1:], start=1):
            if k < len(proven) and isinstance(proven[k], int) and proven[k] == declared[out.name][k]:
                dim.dim_value = proven[k]


def make_shape_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, ShapeRewrite]:
    """A copy of ``model`` whose input height and width are symbolic, and what was rewritten."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inputs = real_inputs(model)
    if len(inputs) != 1 or len(dims(inputs[0])) != 4:
        raise DynamicShapeError("only models with one NCHW image input can be made variable-size")
    shape = dims(inputs[0])
    if not (isinstance(shape[2], int) and isinstance(shape[3], int)):
        raise DynamicShapeError(f"the input {shape} already has a symbolic height or width")
    try:
        shapes = inferred_dims(model)
    except Exception as exc:
        raise DynamicShapeError(f"ONNX shape inference failed ({exc}); grid sizes cannot be traced") from None
    edit = _GraphEdit(model, shapes, constant_values(model))
    done = ShapeRewrite()
    for node in list(model.graph.node):
        if node.op_type == "Reshape":
            done.reshapes += _rewrite_reshape(edit, node)
        elif node.op_type == "Resize":
            done.resizes += _rewrite_resize(edit, node)
    done.grids = _rewrite_grids(edit, (shape[2], shape[3]))
    _drop_unused_constants(model)
    if not toposort(model.graph):
        raise DynamicShapeError("the rewritten graph could not be put in topological order")
    for axis, symbol in ((2, HEIGHT_DIM), (3, WIDTH_DIM)):
        dim = inputs[0].type.tensor_type.shape.dim[axis]
        dim.Clear()
        dim.dim_param = symbol
    del model.graph.value_info[:]  # intermediate shapes still hold the native grid; runtimes re-infer them
    _relax_outputs(model)
    return model, done


def _drop_unused_constants(model: onnx.ModelProto) -> None:
    """Shape constants the rewrite replaced: left in, runtimes warn about them and quantizers see them."""
    used = {inp for node in model.graph.node for inp in node.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    nodes = [n for n in model.graph.node if n.op_type != "Constant" or n.output[0] in used]
    if len(nodes) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(nodes)


# -- the proof ------------------------------------------------------------------------------------------


@dataclass
class SizeCheck:
    """One part of the proof: what ran at which size, against what, and the outcome."""

    label: str
    passed: bool
    detail: str
    max_abs_diff: float | None = None

    def summary(self) -> str:
        return f"{self.label}: {'ok' if self.passed else 'FAILED'} ({self.detail})"


@dataclass
class ShapeCheck:
    checks: list[SizeCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> str:
        return "; ".join(c.summary() for c in self.checks)


@dataclass(frozen=True)
class Reference:
    """A file exported at another input size from the same weights (PicoDet's 320 and 416 files)."""

    name: str
    path: Path
    size: tuple[int, int]


def float_weights(model: onnx.ModelProto) -> list[tuple[tuple[int, ...], bytes]]:
    """The float initializers as sorted (shape, bytes): equal lists mean equal weights whatever their names."""
    return sorted((tuple(i.dims), numpy_helper.to_array(i).tobytes()) for i in model.graph.initializer
                  if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))


def find_reference(card: ModelCard, graph: onnx.ModelProto) -> Reference | None:
    """A zoo file of the same family, precision and weights at another input size, if one is on this machine."""
    from spotdet.backends.onnx_tools import load_onnx
    from spotdet.models.card import zoo
    from spotdet.models.store import find_local

    mine = None
    for other in zoo().values():
        if (other.family != card.family or other.precision != card.precision
                or tuple(other.input_size) == tuple(card.input_size)):
            continue
        path = find_local(other)
        if path is None:
            continue
        mine = float_weights(graph) if mine is None else mine
        if float_weights(load_onnx(path, check=False)) == mine:
            return Reference(other.name, path, tuple(other.input_size))
    return None


def probe_image() -> np.ndarray | None:
    """A real photo (BGR) with one clear subject: scikit-image's astronaut, a person; None if not installed."""
    try:
        from skimage import data
    except ImportError:
        return None
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def probe_sizes(native: tuple[int, int], stride: int) -> list[tuple[int, int]]:
    """Non-square sizes around the native one, multiples of ``stride``: 320x416 and 480x352 around 416x416."""
    sizes = [(native[0] + dh * stride, native[1] + dw * stride) for dh, dw in PROBE_STEPS]
    return [s for s in sizes if min(s) >= stride]


def _run(session, tensor: np.ndarray) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: tensor})


def _session(model: Path | onnx.ModelProto, what: str):
    from spotdet.backends.onnxruntime import ort_session

    try:
        return ort_session(model, log_level=4)
    except Exception as exc:
        raise DynamicShapeError(f"{what} does not load in ONNX Runtime ({ort_reason(exc)})") from None


def _same_outputs(label: str, refs: list[np.ndarray], outs: list[np.ndarray]) -> SizeCheck:
    shapes = [list(o.shape) for o in outs], [list(r.shape) for r in refs]
    if shapes[0] != shapes[1]:
        return SizeCheck(label, False, f"output shapes {shapes[0]} differ from {shapes[1]}")
    worst, tol, ok = compare_outputs(refs, outs)
    return SizeCheck(label, ok, f"max |diff| {worst:.3g}, tolerance {tol:.3g}", worst)


def _detections(outputs: list[np.ndarray], size: tuple[int, int], transform, card: ModelCard):
    from spotdet.postprocess.decoders import get_decoder
    from spotdet.postprocess.nms import class_aware_nms

    boxes, scores, cls = get_decoder(card.family)([o[0] for o in outputs], size, PROBE_CONF, card.decoder)
    keep = class_aware_nms(boxes, scores, cls, 0.6, 100)
    return transform.to_original(boxes[keep]), scores[keep], cls[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def _finds_again(label: str, native, found, card: ModelCard) -> SizeCheck:
    """Whether the strongest native-size detection is found again (same class, IoU >= PROBE_MIN_IOU)."""
    (nb, ns, nc), (boxes, scores, cls) = native, found
    best = int(np.argmax(ns))
    name = card.names[int(nc[best])] if int(nc[best]) < len(card.names) else str(nc[best])
    same = cls == nc[best]
    if not same.any():
        return SizeCheck(label, False, f"no {name} found (native size: {name} {ns[best]:.2f})")
    ious = _iou(nb[best], boxes[same])
    k = int(np.argmax(ious))
    ok = bool(ious[k] >= PROBE_MIN_IOU)
    return SizeCheck(label, ok, f"{name} {scores[same][k]:.2f}, IoU {ious[k]:.2f} with the native-size box "
                                f"({name} {ns[best]:.2f})")


def verify_shape(variant: Path, original: Path | onnx.ModelProto, card: ModelCard,
                 reference: Reference | None = None, image: np.ndarray | None = None) -> ShapeCheck:
    """The proof that ``variant`` takes other sizes: (a) native vs ``original``, (b) vs ``reference`` at its size,
    (c) on ``image`` (a real photo) at non-square sizes, the native-size detection found again."""
    from spotdet.optimize.dynamic_batch import probe_batch
    from spotdet.vision.preprocess import resize_to_input, to_tensor

    native = tuple(card.input_size)
    spec = card.preprocess
    dyn = _session(Path(variant), "the variable-size model")

    def tensor_at(size: tuple[int, int]):
        if image is None:
            return probe_batch(spec, size, 1), None
        canvas, transform = resize_to_input(image, size, spec)
        return to_tensor([canvas], spec), transform

    check = ShapeCheck()
    x, transform = tensor_at(native)
    try:
        base = _run(_session(original, "the original model"), x)
        mine = _run(dyn, x)
    except DynamicShapeError:
        raise
    except Exception as exc:
        raise DynamicShapeError(f"the variable-size model does not run at its native size ({ort_reason(exc)})") \
            from None
    check.checks.append(_same_outputs(f"{native[1]}x{native[0]} vs the original", base, mine))
    if reference is not None:
        rx, _ = tensor_at(reference.size)
        label = f"{reference.size[1]}x{reference.size[0]} vs {reference.name}"
        check.checks.append(_run_or_fail(label, dyn, rx, lambda out: _same_outputs(
            label, _run(_session(reference.path, reference.name), rx), out)))
    if image is not None:
        first = _detections(mine, native, transform, card)
        if not len(first[1]):
            check.checks.append(SizeCheck("photo", False, f"nothing detected at the native size above {PROBE_CONF}"))
            return check
        stride = int(card.decoder.get("stride", 32))
        for size in probe_sizes(native, stride):
            px, ptransform = tensor_at(size)
            label = f"{size[1]}x{size[0]} on a photo"
            check.checks.append(_run_or_fail(label, dyn, px, lambda out: _decoded(
                label, first, out, size, ptransform, card)))
    return check


def _decoded(label: str, native, outputs: list[np.ndarray], size: tuple[int, int], transform,
             card: ModelCard) -> SizeCheck:
    try:
        found = _detections(outputs, size, transform, card)
    except ValueError as exc:  # a decoder that finds the wrong number of cells for this size
        return SizeCheck(label, False, str(exc))
    return _finds_again(label, native, found, card)


def _run_or_fail(label: str, session, tensor: np.ndarray, judge) -> SizeCheck:
    try:
        outputs = _run(session, tensor)
    except Exception as exc:
        return SizeCheck(label, False, f"does not run: {ort_reason(exc)}")
    return judge(outputs)
