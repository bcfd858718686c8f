"""The one ONNX toolbox: read a model with a clear error, clean it, sort it, read its input shape.

Every module that opens or rewrites an ONNX graph (backends, model cards, optimize) uses these functions, so a
quirk of some exporter (weights listed as graph inputs, nodes out of order) is handled once, the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from spotdet.errors import UnsupportedModelError

Dim = int | str | None


def load_onnx(path: str | Path, check: bool = True, weights: bool = True) -> onnx.ModelProto:
    """Read an ONNX file; anything unreadable (or failing the checker) is a one-line UnsupportedModelError."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=weights)
        if check:
            onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, checker ValidationError, OSError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first})") from None
    if check and not model.graph.node:
        raise UnsupportedModelError(f"{path} is not a readable ONNX model (the graph has no nodes)")
    return model


def onnx_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are fed at run time (not weights that an old exporter listed as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def remove_initializer_inputs(model: onnx.ModelProto) -> int:
    """Drop graph inputs that are initializers; returns how many.

    Old exporters (the PicoDet files) list every weight as an input; ONNX Runtime then treats the weights
    as overridable and skips constant folding, and quantizers see hundreds of "inputs".
    """
    keep = real_inputs(model)
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return removed


def dims(value_info: onnx.ValueInfoProto) -> list[Dim]:
    """A tensor's shape: ints for fixed dimensions, the symbol (or None) for dynamic ones."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every tensor whose value is known before a run: initializers and ``Constant`` node outputs, by name.

    Graph rewrites (dynamic batch, dynamic shape) read exporters' hard-coded shapes from here.
    """
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def inferred_dims(model: onnx.ModelProto) -> dict[str, list[Dim]]:
    """The shape of every tensor ONNX shape inference can tell (inputs, intermediates, outputs), by name.

    Raises whatever the inference raises: callers say what the failure means for them.
    """
    shaped = onnx.shape_inference.infer_shapes(model)
    return {vi.name: dims(vi) for vi in [*shaped.graph.value_info, *shaped.graph.input, *shaped.graph.output]}


def toposort(graph: onnx.GraphProto) -> bool:
    """Order ``graph.node`` so every node comes after the producers of its inputs; False (order kept) on a cycle.

    Converters (fp16, keeping QDQ tensors in float) append the nodes they add at the end of the list; ONNX
    Runtime and the checker need topological order.
    """
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:  # a cycle or a subgraph reference: leave the order as it was written
            return False
        ready_ids = {id(n) for n in ready}
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)
    return True


_DYNAMIC_INT8_OPS = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}


def graph_precision(model: onnx.ModelProto) -> str:
    """What a graph computes in, read from its operators and weights: int8-dynamic (activations quantized at
    run time), int8-static (QDQ), fp16 (half-precision weights), else fp32.

    A card made from a bare file needs it: backend choice and conversions depend on it.
    """
    ops = {n.op_type for n in model.graph.node}
    if ops & _DYNAMIC_INT8_OPS:
        return "int8-dynamic"
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "int8-static"
    half = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    return "fp16" if half * 2 > len(model.graph.initializer) else "fp32"


def runtime_bytes(path: str | Path) -> bytes:
    """The model serialised for a runtime, after removing initializers listed as graph inputs."""
    model = load_onnx(path, check=False)
    remove_initializer_inputs(model)
    return model.SerializeToString()
