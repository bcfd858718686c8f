"""Which nodes of a detection head stay in float when the rest of the graph is quantized to INT8.

Quantizing the final score/box nodes collapses detections on YOLO-family heads: the box regression
(values in the tens or hundreds) and the sigmoid scores (0..1) meet in one Concat, which then gets a
single INT8 scale, so every score rounds to 0 or to a handful of saturated levels. The fix is to keep
everything from the last convolution of each head branch to the graph outputs in float. The head is
found by walking back from the outputs through the ops such heads are built from, per family.
"""

from __future__ import annotations

import onnx

# Ops a detection head uses after its last convolution (decode, activation, layout). The walk stops at
# the first op not in the set; the convolution that produced the branch is kept in float too when
# ``include_conv`` is set, since its output range (raw logits and box distances) is what collapses.
_LAYOUT = {"Reshape", "Transpose", "Concat", "Split", "Slice", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
_DECODE = {"Sigmoid", "Softmax", "Exp", "Mul", "Add", "Sub", "Div", "Tanh", "Pow", "MatMul"}


class HeadRule:
    def __init__(self, through: set[str], include_conv: bool = True, max_depth: int = 12) -> None:
        self.through, self.include_conv, self.max_depth = through, include_conv, max_depth


FAMILY_HEADS: dict[str, HeadRule] = {
    # YOLOX: reg conv | sigmoid(obj conv) | sigmoid(cls conv) -> Concat -> Reshape -> Concat -> Transpose
    "yolox": HeadRule(_LAYOUT | {"Sigmoid"}),
    # PicoDet (GFL): conv -> Split -> Sigmoid (scores) / distribution logits -> Reshape -> Transpose
    "picodet": HeadRule(_LAYOUT | {"Sigmoid", "Softmax"}),
    # Ultralytics v8/11: DFL Softmax + box decode arithmetic + Sigmoid classes, then Concat
    "ultralytics": HeadRule(_LAYOUT | _DECODE, max_depth=24),
    # FastestDet: Sigmoid/Softmax/Relu over one conv output, Concat
    "fastestdet": HeadRule(_LAYOUT | {"Sigmoid", "Softmax", "Relu"}),
}
DEFAULT_HEAD = HeadRule(_LAYOUT | _DECODE)


def head_nodes(model: onnx.ModelProto, family: str) -> list[str]:
    """Names of the nodes from the graph outputs back to (and including) each head branch's last conv."""
    rule = FAMILY_HEADS.get(family, DEFAULT_HEAD)
    producer = {out: node for node in model.graph.node for out in node.output}
    inits = {i.name for i in model.graph.initializer}
    picked: dict[str, None] = {}  # ordered set
    frontier = [(o.name, 0) for o in model.graph.output]
    seen: set[str] = set()
    while frontier:
        tensor, depth = frontier.pop()
        node = producer.get(tensor)
        if node is None or tensor in inits or tensor in seen:
            continue
        seen.add(tensor)
        if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
            if rule.include_conv:
                picked[_name(node)] = None
            continue
        if node.op_type not in rule.through or depth >= rule.max_depth:
            continue
        picked[_name(node)] = None
        frontier.extend((i, depth + 1) for i in node.input if i)
    return list(picked)


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give unnamed nodes a stable name so they can be excluded by name."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}_{node.output[0]}"
