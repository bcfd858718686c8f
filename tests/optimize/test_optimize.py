"""spotdet optimize on the real zoo models, real photos and real COCO images (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from support.paths import DATA_DIR, MODEL_DIR, VAL_DIR
from spotdet import Detector
from spotdet.errors import UnsupportedModelError, UsageError
from spotdet.models.card import card_path_for, read_card_file
from spotdet.models.locations import cache_dir
from spotdet.models.store import sha256_of
from spotdet.optimize import optimize
from spotdet.optimize.dynamic_batch import probe_batch, verify_batch
from spotdet.optimize.errors import CalibrationError, DynamicBatchError, PrecisionUnsupportedError
from spotdet.backends.onnx_tools import load_onnx, onnx_opset
from spotdet.optimize.graph_prep import prepare
from spotdet.optimize.head import head_nodes

CALIB = DATA_DIR / "coco128-train"
EXPECTED = {"chelsea": "cat", "astronaut": "person", "coffee": "cup"}


def _classes_found(det: Detector, photos) -> dict[str, set[str]]:
    found = {}
    for name, img in photos.items():
        (r,) = det([img], conf=0.25)
        found[name] = {r.names[int(c)] for c in r.boxes.cls}
    return found


def test_graph_prep_removes_initializer_inputs_and_upgrades_opset():
    raw = load_onnx(MODEL_DIR / "picodet_s_416_coco.onnx")
    assert len(raw.graph.input) > 1 and onnx_opset(raw) == 11
    prepped = prepare(raw)
    assert len(prepped.graph.input) == 1
    assert onnx_opset(prepped) >= 13
    assert len(raw.graph.input) > 1  # the caller's model is left alone


@pytest.mark.parametrize("model,precision", [("yolox-nano", "fp16"), ("picodet-s-416", "fp16"),
                                             ("yolox-nano", "int8-dynamic")])
def test_precision_variant_loads_and_keeps_classes(model, precision, photos):
    res = optimize(model, precision, progress=False)
    assert res.path.parent == cache_dir() and res.path.is_file()
    card = read_card_file(card_path_for(res.path))
    assert card.name == f"{model}-{precision}" and card.precision == precision and card.parent == model
    assert card.sha256 == sha256_of(res.path) and card.url is None
    # the three ways of loading a locally made variant
    for det in (Detector(model, precision=precision), Detector(card.name), Detector(res.path)):
        assert det.card.precision == precision and Path(det.model_path) == res.path
    found = _classes_found(Detector(res.path), photos)
    if precision == "int8-dynamic":
        # dynamic INT8 is known to be inaccurate on YOLOX-nano; it must still load and run
        assert all(isinstance(v, set) for v in found.values())
    else:
        for photo, cls in EXPECTED.items():
            assert cls in found[photo], (photo, found[photo])
    if precision == "fp16":
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(res.path)).graph.initializer)
        assert any("memory, not speed" in n or "not make inference faster" in n for n in res.notes)


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_int8_static_keeps_classes_and_head_in_float(model, photos, tmp_path):
    out = tmp_path / f"{model}-static.onnx"
    res = optimize(model, "int8-static", out=out, calib=CALIB, calib_count=16, activation_bits=16, progress=False)
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert res.excluded_nodes and set(res.excluded_nodes) <= {n.name for n in graph.node}
    # every excluded head node is a float node: none of its outputs is quantized
    quantized_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    for node in graph.node:
        if node.name in res.excluded_nodes and node.op_type != "Conv":
            assert not (set(node.output) & quantized_inputs), node.name
    found = _classes_found(Detector(out), photos)
    for photo, cls in EXPECTED.items():
        assert cls in found[photo], (photo, found[photo])


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_int8_static_a8_mixed_precision_stays_close_to_fp32(model, tmp_path):
    """A8W8 with the automatic float-activation selection: mAP within 2 points of fp32 on 40 val images.

    Without the selection these models lose almost everything (yolox-nano ~5, picodet ~0 mAP), which
    the second half checks, so this test fails if the selection stops doing its job."""
    from spotdet.eval.coco import evaluate

    res = optimize(model, "int8-static", out=tmp_path / "m.onnx", calib=CALIB, calib_count=20, progress=False)
    assert res.mixed is not None and res.mixed.reached and res.mixed.final_db >= res.mixed.target_db
    assert 0 < len(res.mixed.float_tensors) <= res.mixed.candidates // 2
    q = evaluate(Detector(res.path), VAL_DIR, limit=40)
    f = evaluate(Detector(model), VAL_DIR, limit=40)
    assert q.images == f.images == 40 and f.map50_95 > 20.0
    assert abs(f.map50_95 - q.map50_95) <= 2.0, (f.map50_95, q.map50_95)

    plain = optimize(model, "int8-static", out=tmp_path / "p.onnx", calib=CALIB, calib_count=20, progress=False,
                     mixed=False)
    assert plain.mixed is None
    p = evaluate(Detector(plain.path), VAL_DIR, limit=10)
    fp = evaluate(Detector(model), VAL_DIR, limit=10)
    assert p.map50_95 < fp.map50_95 - 5.0, (p.map50_95, fp.map50_95)


def test_keep_float_removes_only_the_chosen_activation_pairs():
    from spotdet.optimize.mixed import activation_params, keep_float
    from spotdet.optimize.quantize import quantize_static_int8
    from spotdet.models.card import get_card
    from spotdet.optimize.calibration import calibration_images

    prepped = prepare(load_onnx(MODEL_DIR / "yolox_nano.onnx"))
    q, info = quantize_static_int8(prepped, get_card("yolox-nano"), calibration_images(CALIB, 2), progress=False,
                                   mixed=False)
    params = activation_params(q)
    chosen = list(params)[:3]
    out = keep_float(q, chosen)
    onnx.checker.check_model(out)
    left = activation_params(out)
    assert set(left) == set(params) - set(chosen)
    n_q = sum(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert sum(n.op_type == "QuantizeLinear" for n in out.graph.node) == n_q - 3


def test_auto_keeps_fp32_unless_a_variant_is_clearly_faster():
    from spotdet.optimize.auto import AutoReport, Variant, choose

    def rep(ms_fp16: float, map_fp16: float) -> AutoReport:
        r = AutoReport("m", "d", "c", 1.0)
        r.variants = [Variant("m", "fp32", False, "m", row={"map50_95": 30.0, "p50_ms_per_image_best": 10.0,
                                                            "best_batch": 1}),
                      Variant("m-fp16", "fp16", False, "x", row={"map50_95": map_fp16,
                                                                  "p50_ms_per_image_best": ms_fp16, "best_batch": 1})]
        choose(r)
        return r

    assert rep(9.7, 30.0).chosen == "m"  # 3% faster: noise, keep fp32
    assert "kept fp32" in rep(9.7, 30.0).reason
    assert rep(9.0, 29.5).chosen == "m-fp16"  # 10% faster, within budget
    assert rep(5.0, 28.0).chosen == "m"  # fast but over the mAP budget


def test_head_exclusion_is_per_family_and_overridable(tmp_path):
    prepped = prepare(load_onnx(MODEL_DIR / "yolox_nano.onnx"))
    nodes = {n.name: n for n in prepped.graph.node}
    head = head_nodes(prepped, "yolox")
    assert {nodes[n].op_type for n in head} >= {"Transpose", "Concat", "Sigmoid", "Conv"}
    assert nodes[head[0]].output[0] == prepped.graph.output[0].name  # walked back from the output
    res = optimize("yolox-nano", "int8-static", out=tmp_path / "x.onnx", calib=CALIB, calib_count=4,
                   exclude_nodes=[], progress=False)
    assert res.excluded_nodes == []
    with pytest.raises(PrecisionUnsupportedError, match="no node named"):
        optimize("yolox-nano", "int8-static", out=tmp_path / "y.onnx", calib=CALIB, calib_count=4,
                 exclude_nodes=["nope"], progress=False)


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_dynamic_batch_outputs_match_batch1(model, val_images):
    import cv2

    res = optimize(model, dynamic_batch=True, progress=False)
    assert res.card.name == f"{model}-dynbatch" and res.reshapes_rewritten > 0
    assert res.batch_check.passed
    # an independent check with four real COCO images
    det = Detector(res.path)
    assert det.dynamic_batch
    imgs = [cv2.imread(str(p)) for p in val_images[:4]]
    check = verify_batch(res.path, probe_batch(det.card.preprocess, tuple(det.card.input_size), images=imgs))
    assert check.passed and check.max_abs_diff <= check.tolerance
    # Detector batches the 4 images in one run; results equal the unbatched fp32 parent's
    base = Detector(model)
    for a, b in zip(det(imgs), base(imgs)):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy, atol=1e-2)


def test_dynamic_batch_is_refused_when_not_provable(tmp_path):
    # FastestDet computes a reshape target from constants; the rewrite cannot see it and the check catches it
    with pytest.raises(DynamicBatchError, match="batch"):
        optimize("fastestdet", dynamic_batch=True, out=tmp_path / "f.onnx", progress=False)
    # dynamic INT8 scales depend on the whole batch: refused with that reason
    with pytest.raises(DynamicBatchError, match="activation scale"):
        optimize("yolov8n-int8", dynamic_batch=True, out=tmp_path / "y.onnx", progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_unsupported_requests_are_refused(tmp_path):
    with pytest.raises(PrecisionUnsupportedError, match="int4 is not applicable.*MatMul"):
        optimize("yolox-nano", "int4")
    with pytest.raises(PrecisionUnsupportedError, match="int8-dynamic already"):
        optimize("yolov8n-int8", "fp16")
    with pytest.raises(PrecisionUnsupportedError, match="needs calibration images"):
        optimize("yolox-nano", "int8-static")
    with pytest.raises(PrecisionUnsupportedError, match="precision must be one of"):
        optimize("yolox-nano", "int3")


def test_int4_applies_to_graphs_with_matmul_weights(tmp_path):
    """A graph with a real MatMul weight gets weight-only 4-bit (MatMulNBits) instead of a refusal."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(256, 256)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 256])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    from spotdet.models.card import get_card
    from spotdet.optimize.quantize import quantize_int4

    q = quantize_int4(model, get_card("yolox-nano"))
    assert "MatMulNBits" in {n.op_type for n in q.graph.node}


def test_bad_inputs_give_clear_errors(tmp_path, val_images):
    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises((UnsupportedModelError, UsageError)):
        optimize(str(not_onnx), "fp16", family="yolox")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no images"):
        optimize("yolox-nano", "int8-static", calib=empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CalibrationError, match="could be read"):
        optimize("yolox-nano", "int8-static", calib=broken)
    with pytest.raises(CalibrationError, match="no such directory"):
        optimize("yolox-nano", "int8-static", calib=tmp_path / "missing")
    with pytest.raises(PrecisionUnsupportedError, match=r"\.onnx"):
        optimize("yolox-nano", "fp16", out=tmp_path / "out.txt")


def test_failed_build_leaves_nothing_behind(tmp_path):
    out = tmp_path / "models" / "x.onnx"
    with pytest.raises(CalibrationError):
        optimize("yolox-nano", "int8-static", out=out, calib=tmp_path / "missing")
    assert not out.exists()
    with pytest.raises(DynamicBatchError):
        optimize("fastestdet", dynamic_batch=True, out=out, progress=False)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_ctrl_c_during_calibration_leaves_no_partial_file(tmp_path):
    """SIGINT to a real `spotdet optimize` process mid-calibration: exit 130, no model, no temp file."""
    out_dir = tmp_path / "out"
    env = {**os.environ, "SPOTDET_MODEL_DIR": str(MODEL_DIR), "SPOTDET_CACHE_DIR": str(tmp_path / "c"),
           "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "spotdet.cli.main", "optimize", "yolox-nano", "-p", "int8-static",
                             "--calib", str(CALIB), "--calib-count", "128", "-o", str(out_dir / "m.onnx")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # imports + graph preparation; calibrating 128 images takes far longer
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not (out_dir / "m.onnx").exists()
    assert not list(out_dir.glob("*.part")) if out_dir.exists() else True


def test_cli_optimize_and_errors(tmp_path):
    env = {**os.environ, "SPOTDET_MODEL_DIR": str(MODEL_DIR), "SPOTDET_CACHE_DIR": str(tmp_path / "c"),
           "NO_COLOR": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "spotdet.cli.main", "optimize", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    ok = run("yolox-nano", "-p", "fp16", "-o", str(tmp_path / "y16.onnx"))
    assert ok.returncode == 0, ok.stderr
    assert "yolox-nano-fp16" in ok.stdout and (tmp_path / "y16.card.toml").is_file()
    assert "faster" in ok.stderr  # the fp16-on-CPU note
    for args, code, text in [
        (("yolox-nano", "-p", "int4"), 2, "int4 is not applicable"),
        (("yolox-nano", "-p", "int8-static", "--calib", str(tmp_path / "nope")), 2, "no such directory"),
        (("yolox-nano",), 2, "say what to build"),
        (("yolox-nano", "--auto", "--calib", str(CALIB), "--data", str(tmp_path)), 2, "instances.json"),
        (("fastestdet", "--dynamic-batch", "-o", str(tmp_path / "f.onnx")), 1, "refused"),
    ]:
        r = run(*args)
        assert r.returncode == code, (args, r.stderr)
        assert text in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_auto_small(tmp_path):
    """--auto end to end on a few images: every variant measured in its own process, a choice made."""
    from spotdet.optimize.auto import run_auto, to_markdown, write_reports

    report = run_auto("yolox-nano", CALIB, VAL_DIR, max_map_drop=1.0, out_dir=tmp_path / "m", calib_count=4,
                      limit=4)
    names = [v.name for v in report.variants]
    assert names[:2] == ["yolox-nano", "yolox-nano-dynbatch"]
    assert "yolox-nano-int8-static" in names and "yolox-nano-int8-dynamic-dynbatch" in names
    refused = next(v for v in report.variants if v.name == "yolox-nano-int8-dynamic-dynbatch")
    assert refused.skipped and "activation scale" in refused.skipped
    measured = [v for v in report.variants if v.row]
    assert len(measured) >= 6
    for v in measured:
        assert v.row["size_mb"] > 0 and v.row["peak_rss_mb"] > 20 and v.row["p50_ms_b1"] > 0
    assert report.chosen in names
    js, md = write_reports(report, tmp_path)
    assert js.is_file() and "| variant |" in md.read_text() and report.chosen in to_markdown(report)


def test_atomic_writer_removes_temp_file_on_interrupt(tmp_path):
    from spotdet.optimize.writer import atomic_model_file, save_model

    out = tmp_path / "m.onnx"
    model = load_onnx(MODEL_DIR / "yolox_nano.onnx")
    with pytest.raises(KeyboardInterrupt):
        with atomic_model_file(out) as tmp:
            save_model(model, tmp)
            assert tmp.stat().st_size > 1000 and tmp.parent == out.parent
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_model_file(out) as tmp:
        save_model(model, tmp)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
