"""fp32 from a dynamic-INT8 export: each DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul becomes one Conv.

``spotdet optimize yolov8n-int8 --precision fp32`` (the one builder whose source is not fp32).

Why: ``yolo export int8=True``-style files (the zoo's yolov8n-int8 and yolo11n-int8) quantize activations at
run time and convolve in integers. On CPUs without fast integer paths for that pattern they are the slowest
models in the zoo, and they cannot use bf16. Their weights, dequantized once, ``(w - zero_point) * scale``,
make an ordinary float model that computes what the INT8 graph approximates (the activation rounding goes
away), runs on every backend and precision, and scores the same mAP (checked per file by the caller).

Only the exact chain is rewritten; anything else around it is kept as it is. A file whose ConvInteger nodes do
not all fit the chain is refused with the node that does not, rather than half converted.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spotdet.models.card import ModelCard
from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.precisions.base import Builder, Built
from spotdet.optimize.request import OptimizeRequest


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            out[name].append(node)
    for value in graph.output:
        out[value.name].append(None)  # type: ignore[arg-type]  # a graph output counts as a use
    return out


def _refuse(node: onnx.NodeProto, why: str) -> PrecisionUnsupportedError:
    return PrecisionUnsupportedError(f"cannot dequantize ConvInteger node {node.name or node.output[0]!r}: {why}")


def _per_channel(values: np.ndarray, channels: int, what: str, node: onnx.NodeProto) -> np.ndarray:
    """A scalar or per-output-channel parameter, shaped to broadcast over (C_out, C_in/g, kH, kW)."""
    flat = values.astype(np.float32).reshape(-1)
    if flat.size == 1:
        return flat.reshape(())
    if flat.size == channels:
        return flat.reshape(channels, 1, 1, 1)
    raise _refuse(node, f"{what} has {flat.size} values for {channels} output channels")


def dequantize_conv_integer(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every DynamicQuantizeLinear/ConvInteger/Cast/Mul chain as a float Conv.

    Returns (model, chains rewritten). Raises PrecisionUnsupportedError when there is nothing to rewrite or
    a ConvInteger does not sit in the exact chain.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    users = _consumers(graph)
    convs = [n for n in graph.node if n.op_type == "ConvInteger"]
    if not convs:
        raise PrecisionUnsupportedError("the model has no ConvInteger nodes: nothing to dequantize")
    drop: set[int] = set()
    replacement: dict[int, onnx.NodeProto] = {}
    new_inits: list[TensorProto] = []
    for conv in convs:
        x_q, w_q = conv.input[0], conv.input[1]
        w_zp = conv.input[3] if len(conv.input) > 3 and conv.input[3] else None
        quant = producer.get(x_q)
        if quant is None or quant.op_type != "DynamicQuantizeLinear":
            raise _refuse(conv, "its input is not produced by DynamicQuantizeLinear")
        if w_q not in inits or (w_zp and w_zp not in inits):
            raise _refuse(conv, "its weights or weight zero point are not constants")
        cast_users = users[conv.output[0]]
        if len(cast_users) != 1 or cast_users[0] is None or cast_users[0].op_type != "Cast":
            raise _refuse(conv, "its output does not go to exactly one Cast")
        cast = cast_users[0]
        mul_users = users[cast.output[0]]
        if len(mul_users) != 1 or mul_users[0] is None or mul_users[0].op_type != "Mul":
            raise _refuse(conv, "the Cast does not go to exactly one Mul")
        mul = mul_users[0]
        scales = producer.get(next(i for i in mul.input if i != cast.output[0]))
        if scales is None or scales.op_type != "Mul" or quant.output[1] not in scales.input:
            raise _refuse(conv, "the output is not scaled by (activation scale x weight scale)")
        w_scale = next(i for i in scales.input if i != quant.output[1])
        if w_scale not in inits:
            raise _refuse(conv, "the weight scale is not a constant")
        weights = numpy_helper.to_array(inits[w_q]).astype(np.float32)
        channels = weights.shape[0]
        zero = _per_channel(numpy_helper.to_array(inits[w_zp]), channels, "the weight zero point", conv) if w_zp \
            else np.float32(0.0)
        scale = _per_channel(numpy_helper.to_array(inits[w_scale]), channels, "the weight scale", conv)
        name = f"{w_q}_dequantized"
        new_inits.append(numpy_helper.from_array(((weights - zero) * scale).astype(np.float32), name))
        replacement[id(mul)] = helper.make_node("Conv", [quant.input[0], name], [mul.output[0]],
                                                name=(conv.name or mul.output[0]) + "_float", domain="")
        replacement[id(mul)].attribute.extend(conv.attribute)
        drop.update({id(conv), id(cast)})
        if len(users[scales.output[0]]) == 1:
            drop.add(id(scales))
    kept = []
    for node in graph.node:
        if id(node) in replacement:
            kept.append(replacement[id(node)])
        elif id(node) not in drop:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    _drop_unused(graph)
    graph.initializer.extend(new_inits)
    _drop_unused(graph)
    return model, len(convs)


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nobody uses (the orphaned DynamicQuantizeLinear) and unused initializers."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def build(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    model, chains = dequantize_conv_integer(graph)
    return Built(model, notes=[f"{chains} ConvInteger chains rewritten as float Conv with dequantized weights; "
                               "check its mAP against the INT8 file with `spotdet eval`"],
                 card_notes=[f"dequantized from {card.name} ({card.precision}): {chains} ConvInteger -> Conv"])


BUILDER = Builder("fp32", build, source="int8-dynamic")
