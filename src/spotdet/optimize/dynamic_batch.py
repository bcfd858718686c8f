"""Make a static batch-1 graph batchable, then prove it: each image's batch-4 outputs must equal its batch-1 outputs.

Renaming the input's first dimension is not enough: exporters bake the batch of 1 into Reshape shape
constants (``[1, 85, -1]``), so a batch of 4 comes back merged or the run fails. Every Reshape whose data
input and target shape both start with the batch of 1 gets its own copy of the shape with a leading 0
("copy this dimension from the input"), which is exactly the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from spotdet.backends.onnx_tools import constant_values, dims, inferred_dims, real_inputs
from spotdet.models.card import PreprocessSpec
from spotdet.optimize.errors import DynamicBatchError

BATCH_DIM = "batch"
CHECK_BATCH = 4
#: |batch4 - batch1| <= ATOL_REL * max|batch1 output| + RTOL * |batch1|, per output. Batched kernels may
#: sum in another order, so bit-equality is not required; a merged or shifted batch differs by O(1).
RTOL = 1e-3
ATOL_REL = 1e-4


@dataclass
class BatchCheck:
    batch: int
    max_abs_diff: float
    tolerance: float
    passed: bool

    def summary(self) -> str:
        verdict = "match" if self.passed else "DIFFER"
        return (f"batch-{self.batch} outputs {verdict} each image's batch-1 outputs "
                f"(max |diff| {self.max_abs_diff:.3g}, tolerance {self.tolerance:.3g})")


def _dim0(value_info: onnx.ValueInfoProto) -> int | str | None:
    return (dims(value_info) or [None])[0]


def has_dynamic_batch(model: onnx.ModelProto) -> bool:
    inp = real_inputs(model)
    return len(inp) == 1 and not isinstance(_dim0(inp[0]), int)


def make_batch_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with a symbolic batch dimension; returns (model, Reshape shapes rewritten)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inputs = real_inputs(model)
    if len(inputs) != 1:
        raise DynamicBatchError(f"the graph has {len(inputs)} inputs; only single-image-input models are supported")
    if _dim0(inputs[0]) != 1:
        raise DynamicBatchError(f"the input's first dimension is {_dim0(inputs[0])!r}, not a static batch of 1")
    try:
        dim0 = {name: (shape or [None])[0] for name, shape in inferred_dims(model).items()}
    except Exception as exc:
        raise DynamicBatchError(f"ONNX shape inference failed ({exc}); the batch dimension cannot be traced") from None
    consts = constant_values(model)

    rewritten = 0
    new_inits: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = consts.get(node.input[1])
        if shape is None or shape.ndim != 1 or shape.size == 0 or int(shape[0]) != 1:
            continue  # computed at run time (Shape -> ...) or not batch-leading: nothing hard-coded
        if dim0.get(node.input[0]) != 1:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            raise DynamicBatchError(f"Reshape {node.name or node.output[0]} sets allowzero=1, so its "
                                    "hard-coded batch of 1 cannot become 'copy the input dimension'")
        fixed = shape.astype(np.int64).copy()
        fixed[0] = 0
        name = f"{node.input[1]}__dynbatch"
        new_inits.setdefault(name, numpy_helper.from_array(fixed, name))
        node.input[1] = name
        rewritten += 1
    model.graph.initializer.extend(new_inits.values())

    inputs[0].type.tensor_type.shape.dim[0].Clear()
    inputs[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    del model.graph.value_info[:]  # intermediate shapes still say 1; let runtimes re-infer them
    return model, rewritten


def probe_batch(spec: PreprocessSpec, size_hw: tuple[int, int], n: int = CHECK_BATCH,
                images: list[np.ndarray] | None = None) -> np.ndarray:
    """``n`` different images as an NCHW tensor with the model's own preprocessing.

    Real images when given; otherwise seeded textures (noise plus gradients) that still produce distinct,
    non-trivial activations, so a merged or shifted batch shows up as a large difference.
    """
    from spotdet.vision.preprocess import resize_to_input, to_tensor

    rng = np.random.default_rng(0)
    h, w = size_hw
    picked = list(images or [])[:n]
    while len(picked) < n:
        yy, xx = np.mgrid[0:h, 0:w]
        base = (np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
                * rng.uniform(0.3, 1.0)).astype(np.float32)
        noise = rng.normal(0, 40, (h, w, 3))
        picked.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    canvases = [resize_to_input(img, size_hw, spec)[0] for img in picked]
    return to_tensor(canvases, spec)


def verify_batch(model_path: str | Path, tensor: np.ndarray) -> BatchCheck:
    """Run the whole batch once and each image alone, with ONNX Runtime on CPU, and compare."""
    from spotdet.backends.onnxruntime import ort_session

    try:  # log level 4: a failing run is reported below as one line, not as an ORT log dump
        sess = ort_session(Path(model_path), log_level=4)
        name = sess.get_inputs()[0].name
        batched = sess.run(None, {name: tensor})
        singles = [sess.run(None, {name: tensor[i:i + 1]}) for i in range(len(tensor))]
    except Exception as exc:
        raise DynamicBatchError(f"refused: the model cannot be proven batchable: the rewritten graph does not run "
                                f"at batch {len(tensor)} ({ort_reason(exc)}); a batch size is computed somewhere "
                                "the Reshape rewrite cannot see") from None
    refs = [np.concatenate([s[k] for s in singles], axis=0) for k in range(len(batched))]
    for k, (out, ref) in enumerate(zip(batched, refs)):
        if out.shape != ref.shape:
            raise DynamicBatchError(f"output {k} has shape {list(out.shape)} at batch {len(tensor)}, expected "
                                    f"{list(ref.shape)}: the batch is merged somewhere the rewrite cannot see")
    worst, tol_used, ok = compare_outputs(refs, batched)
    return BatchCheck(len(tensor), worst, tol_used, ok)


def compare_outputs(refs: list[np.ndarray], outs: list[np.ndarray]) -> tuple[float, float, bool]:
    """(max |diff|, largest absolute tolerance used, all within tolerance) over same-shape output pairs.

    Per output: |out - ref| <= ATOL_REL * max(1, max|ref|) + RTOL * |ref|. Shared by every rewrite's proof
    (dynamic batch, dynamic shape) so "identical" means the same thing for both.
    """
    worst, tol_used, ok = 0.0, 0.0, True
    for ref, out in zip(refs, outs):
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        atol = ATOL_REL * max(1.0, float(np.abs(ref64).max(initial=0.0)))
        diff = np.abs(out64 - ref64)
        worst = max(worst, float(diff.max(initial=0.0)))
        tol_used = max(tol_used, atol)
        ok &= bool((diff <= atol + RTOL * np.abs(ref64)).all())
    return worst, tol_used, ok


def ort_reason(exc: Exception) -> str:
    """The useful part of an ONNX Runtime run error: the node and the shapes, not the C++ source location."""
    import re

    text = " ".join(str(exc).split())
    node = re.search(r"Name:'([^']+)'", text)
    shapes = re.search(r"Input shape:\{[^}]*\}, requested shape:\{[^}]*\}", text)
    if shapes:
        return f"node {node.group(1) if node else '?'}: {shapes.group(0)}"
    return text[:200]
