"""Which detection-head nodes stay in float: walked back from the outputs, per family."""

from __future__ import annotations

from support.paths import MODEL_DIR
from spotdet.backends.onnx_tools import load_onnx
from spotdet.optimize.graph_prep import prepare
from spotdet.optimize.head import head_nodes


def test_head_exclusion_is_per_family():
    prepped = prepare(load_onnx(MODEL_DIR / "yolox_nano.onnx"))
    nodes = {n.name: n for n in prepped.graph.node}
    head = head_nodes(prepped, "yolox")
    assert {nodes[n].op_type for n in head} >= {"Transpose", "Concat", "Sigmoid", "Conv"}
    assert nodes[head[0]].output[0] == prepped.graph.output[0].name  # walked back from the output
