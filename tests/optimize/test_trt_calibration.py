"""TensorRT's INT8 calibration table: measured on real COCO images, written in ONNX Runtime's format, read back.

The table is the one thing of TensorRT INT8 that needs no GPU: it is made here with the CPU provider and checked
the way TensorRT's provider reads it (flatbuffers key/value pairs).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from spotdet import Detector
from spotdet.backends.onnx_tools import graph_precision
from spotdet.backends.tensorrt import calibration_table_for
from spotdet.models.card import get_card
from spotdet.optimize.api import OptimizeRequest, optimize
from spotdet.optimize.calibration import ImageCalibrationReader, calibration_images
from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.trt_calibration import calibration_ranges, read_table, write_table
from support.paths import COCO128, MODEL_DIR


def test_table_round_trip(tmp_path):
    ranges = {"images": 255.0, "conv_1": 1.5, "neg": 0.25}
    path = write_table(ranges, tmp_path / "t.flatbuffers")
    assert read_table(path) == ranges
    assert not list(tmp_path.glob("*.part"))


def test_an_unreadable_table_is_a_clear_error(tmp_path):
    from spotdet.optimize.errors import CalibrationError

    bad = tmp_path / "bad.flatbuffers"
    bad.write_bytes(b"\x00\x01")
    with pytest.raises(CalibrationError, match="not a TensorRT calibration table"):
        read_table(bad)


def shifted_model(path, shift: float):
    """images -> images - shift: an output range known from the input (asymmetric, mostly negative)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 416, 416])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 416, 416])
    shift_t = helper.make_tensor("shift", TensorProto.FLOAT, [], [shift])
    graph = helper.make_graph([helper.make_node("Sub", ["images", "shift"], ["out"])], "shift", [x], [y], [shift_t])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_ranges_are_symmetric_and_cover_the_negative_side(tmp_path):
    card = get_card("yolox-nano")  # 0-255 input, no normalisation
    files = calibration_images(COCO128, 6)
    tensors = ImageCalibrationReader(files, card, "images").tensors
    lo, hi = min(t.min() for t in tensors), max(t.max() for t in tensors)
    ranges = calibration_ranges(shifted_model(tmp_path / "s.onnx", 300.0), card, files)
    assert ranges["images"] == pytest.approx(max(abs(lo), abs(hi)))
    # out = images - 300 lies in [lo - 300, hi - 300], all negative: its range is |lo - 300|, not hi - 300
    assert ranges["out"] == pytest.approx(abs(lo - 300.0))


@pytest.fixture(scope="module")
def int8_variant(tmp_path_factory):
    """yolox-nano made TensorRT-INT8 by spotdet optimize, calibrated on 4 real COCO images."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("SPOTDET_CACHE_DIR")
    os.environ["SPOTDET_CACHE_DIR"] = str(cache)
    try:
        yield optimize("yolox-nano", OptimizeRequest(precision="int8", calib=COCO128, calib_count=4,
                                                     device="tensorrt"), progress=False), cache
    finally:
        if old is None:
            os.environ.pop("SPOTDET_CACHE_DIR", None)
        else:
            os.environ["SPOTDET_CACHE_DIR"] = old


def test_optimize_writes_an_fp32_variant_and_its_table_from_real_images(int8_variant):
    result, _ = int8_variant
    table = calibration_table_for(result.path)
    assert result.card.precision == "int8" and table.is_file()
    graph = onnx.load(str(result.path))
    assert graph_precision(graph) == "fp32"  # the file stays fp32: TensorRT quantizes while it builds
    ranges = read_table(table)
    names = {o for n in graph.graph.node for o in n.output} | {i.name for i in graph.graph.input}
    assert set(ranges) <= names and len(ranges) > 100
    assert {graph.graph.input[0].name, graph.graph.output[0].name} <= set(ranges)
    assert all(math.isfinite(v) and v > 0 for v in ranges.values())
    assert 200 < ranges[graph.graph.input[0].name] <= 255  # 0-255 pixels
    assert "TensorRT" in " ".join(result.notes) and "TensorRT INT8" in result.card.notes


def test_the_int8_variant_runs_at_fp32_off_tensorrt_and_says_so(int8_variant, photos, caplog, monkeypatch):
    _, cache = int8_variant
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(cache))
    with caplog.at_level(logging.WARNING):
        det = Detector("yolox-nano", precision="int8", device="cpu")
    assert det.backend.precision == "int8" and "runs at fp32" in caplog.text
    assert "cat" in [d["class_name"] for d in det(photos["chelsea"])[0].detections()]


def test_int8_needs_tensorrt_and_images():
    with pytest.raises(PrecisionUnsupportedError, match="--device tensorrt"):
        optimize("yolox-nano", OptimizeRequest(precision="int8", calib=COCO128))
    with pytest.raises(PrecisionUnsupportedError, match="--calib DIR"):
        optimize("yolox-nano", OptimizeRequest(precision="int8", device="tensorrt"))
    with pytest.raises(PrecisionUnsupportedError, match="device must be one of"):
        OptimizeRequest(precision="int8", device="gpu")


def test_cli(tmp_path):
    env = {**os.environ, "SPOTDET_MODEL_DIR": str(MODEL_DIR), "SPOTDET_CACHE_DIR": str(tmp_path / "c"), "NO_COLOR": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "spotdet.cli.main", "optimize", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    ok = run("fastestdet", "--precision", "int8", "--calib", str(COCO128), "--calib-count", "2", "--device", "tensorrt",
             "-o", str(tmp_path / "f8.onnx"))
    assert ok.returncode == 0, ok.stderr
    assert read_table(tmp_path / "f8.trt-calibration.flatbuffers")
    refused = run("fastestdet", "--precision", "int8", "--calib", str(COCO128))
    assert refused.returncode == 2 and "--device tensorrt" in refused.stderr and "Traceback" not in refused.stderr
    assert not np.any([p.suffix == ".onnx" for p in (tmp_path / "c").glob("*int8*")])
