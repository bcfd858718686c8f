"""FP16 conversion with float32 inputs and outputs kept, so callers do not change."""

from __future__ import annotations

import onnx

from spotdet.optimize.errors import OptimizeError

CPU_NOTE = ("fp16 on CPU: ONNX Runtime's CPU provider has few fp16 kernels and inserts casts around the "
            "rest, so fp16 halves the file and weight memory but does not make inference faster on CPU; "
            "its speed-up is on GPUs (CUDA/TensorRT)")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise OptimizeError(f"fp16 conversion failed ({type(exc).__name__}: {exc})") from None
    _topological_sort(converted.graph)  # the converter appends its input casts at the end of the node list
    return converted


def _topological_sort(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:  # a cycle or a subgraph reference: leave the order as the converter wrote it
            return
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)
