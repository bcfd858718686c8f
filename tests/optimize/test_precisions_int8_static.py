"""The int8-static builder on real models and real COCO calibration images: QDQ, the head kept in float,
and --exclude-nodes replacing the automatic head choice."""

from __future__ import annotations

import onnx
import pytest

from support.paths import COCO128
from spotdet import Detector
from spotdet.optimize import optimize
from spotdet.optimize.errors import PrecisionUnsupportedError


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_int8_static_keeps_classes_and_head_in_float(model, assert_keeps_classes, tmp_path):
    out = tmp_path / f"{model}-static.onnx"
    res = optimize(model, "int8-static", out=out, calib=COCO128, calib_count=16, activation_bits=16, progress=False)
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert res.excluded_nodes and set(res.excluded_nodes) <= {n.name for n in graph.node}
    # every excluded head node is a float node: none of its outputs is quantized
    quantized_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    checked = 0
    for node in graph.node:
        if node.name in res.excluded_nodes and node.op_type != "Conv":
            assert not (set(node.output) & quantized_inputs), node.name
            checked += 1
    assert checked > 0  # the loop above looked at some head nodes
    assert_keeps_classes(Detector(out))


def test_exclude_nodes_replaces_the_head_choice(tmp_path):
    res = optimize("yolox-nano", "int8-static", out=tmp_path / "x.onnx", calib=COCO128, calib_count=4,
                   exclude_nodes=[], progress=False)
    assert res.excluded_nodes == []
    with pytest.raises(PrecisionUnsupportedError, match="no node named"):
        optimize("yolox-nano", "int8-static", out=tmp_path / "y.onnx", calib=COCO128, calib_count=4,
                 exclude_nodes=["nope"], progress=False)


def test_the_card_records_the_cpu_it_was_built_on_and_another_class_warns_once(tmp_path, monkeypatch, caplog):
    """Built as on a VNNI CPU (the override), loaded as on an AVX2-only one: one warning naming both."""
    import logging

    from spotdet.hardware import FEATURES_ENV
    from spotdet.models.card import read_card_file

    monkeypatch.setenv(FEATURES_ENV, "avx2,fma,avx512f,avx512_vnni")
    res = optimize("yolox-nano", "int8-static", out=tmp_path / "v.onnx", calib=COCO128, calib_count=4,
                   mixed=False, progress=False)
    card = read_card_file(res.card_path)
    assert card.built_on["isa"] == "avx512-vnni" and card.built_on["vnni"] is True
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma")
    with caplog.at_level(logging.WARNING, logger="spotdet.hardware.compat"):
        Detector(res.path)
        Detector(res.path)
    warned = [r.message for r in caplog.records if "no VNNI" in r.message]
    assert len(warned) == 1 and "(avx512-vnni)" in warned[0] and "(avx2)" in warned[0]
