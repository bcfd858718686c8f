"""Dynamic input size: the rewrite on small graphs with known answers, the proof on the real zoo files, the
variants in Detector (ONNX Runtime and OpenVINO), and the refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spotdet import Detector
from spotdet.backends import fixed_size
from spotdet.backends.onnx_tools import load_onnx, remove_initializer_inputs
from spotdet.backends.onnxruntime import ort_session
from spotdet.models.card import get_card
from spotdet.optimize import optimize
from spotdet.optimize.dynamic_shape import (align_dims, find_reference, float_weights, has_dynamic_shape,
                                            make_shape_dynamic, probe_image, verify_shape)
from spotdet.optimize.errors import DynamicShapeError
from support.paths import MODEL_DIR


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort_session(model, log_level=4)
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _graph(nodes, inits, out_shape, in_hw=(4, 6), channels=4) -> onnx.ModelProto:
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, *in_hw])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "g", [inp], [out], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_align_dims_groups_equal_products():
    assert align_dims([1, 96, 52, 52], [1, 2, 48, 52, 52]) == [([0], [0]), ([1], [1, 2]), ([2], [3]), ([3], [4])]
    assert align_dims([1, 85, 52, 52], [1, 85, 2704]) == [([0], [0]), ([1], [1]), ([2, 3], [2])]
    assert align_dims([2, 24, 1936], [2, 1, 24, 44, 44]) == [([0], [0]), ([1], [1, 2]), ([2], [3, 4])]
    assert align_dims([6, 5], [10, 3]) == [([0, 1], [0, 1])]  # many to many: kept as one (constant) group
    assert align_dims([6], [4]) is None  # not a regrouping: nothing can be traced


def test_channel_shuffle_follows_the_input_size():
    """PicoDet's shuffle: [1,C,H,W] -> [1,2,C/2,H,W] -> transpose -> [1,C,H,W], with H and W hard-coded."""
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r1"]),
             helper.make_node("Transpose", ["r1"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s2"], ["y"])]
    model = _graph(nodes, {"s1": np.array([1, 2, 2, 4, 6]), "s2": np.array([1, 4, 4, 6])}, [1, 4, 4, 6])
    dyn, done = make_shape_dynamic(model)
    assert done.reshapes == 2 and has_dynamic_shape(dyn) and not has_dynamic_shape(model)
    x = np.random.default_rng(0).normal(size=(1, 4, 8, 10)).astype(np.float32)
    want = x.reshape(1, 2, 2, 8, 10).transpose(0, 2, 1, 3, 4).reshape(1, 4, 8, 10)
    np.testing.assert_array_equal(_run(dyn, x)[0], want)
    native = x[:, :, :4, :6].copy()
    np.testing.assert_array_equal(_run(dyn, native)[0], _run(model, native)[0])


def test_flattened_grid_split_back_reads_the_feature_map():
    """FastestDet / YOLO11 attention: [1,C,H,W] -> [C,H*W] (some op) -> [1,C,H,W]: H, W come from the map."""
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["flat"]),
             helper.make_node("Relu", ["flat"], ["act"]),
             helper.make_node("Reshape", ["act", "s2"], ["y"])]
    model = _graph(nodes, {"s1": np.array([4, 24]), "s2": np.array([1, 4, 4, 6])}, [1, 4, 4, 6])
    dyn, done = make_shape_dynamic(model)
    assert done.reshapes == 2
    x = np.random.default_rng(1).normal(size=(1, 4, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(_run(dyn, x)[0], np.maximum(x, 0))


def test_resize_to_fixed_sizes_becomes_a_scale():
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")]
    model = _graph(nodes, {"sizes": np.array([1, 4, 8, 12], np.int64)}, [1, 4, 8, 12])
    dyn, done = make_shape_dynamic(model)
    assert done.resizes == 1
    x = np.random.default_rng(2).normal(size=(1, 4, 3, 5)).astype(np.float32)
    assert _run(dyn, x)[0].shape == (1, 4, 6, 10)


def test_an_unknown_per_cell_constant_is_refused():
    """A head that adds a constant with one value per output cell that is not an anchor grid: refused, named."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["flat"]),
             helper.make_node("Reshape", ["x", "s"], ["flat2"]),
             helper.make_node("Concat", ["flat", "flat2"], ["cat"], axis=2),
             helper.make_node("Add", ["cat", "bias"], ["y"])]
    inits = {"s": np.array([1, 4, -1]), "bias": np.arange(48, dtype=np.float32)[None, None]}
    with pytest.raises(DynamicShapeError, match="bias .* one value per output cell"):
        make_shape_dynamic(_graph(nodes, inits, [1, 4, 48]))


def test_proof_catches_a_rename_only_variant(tmp_path):
    """Renaming the input's H and W without the rewrite: the proof fails at other sizes (not silently wrong)."""
    card = get_card("picodet-s-416")
    model = load_onnx(MODEL_DIR / "picodet_s_416_coco.onnx")
    remove_initializer_inputs(model)
    for axis in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = f"d{axis}"
    del model.graph.value_info[:]
    onnx.save(model, tmp_path / "renamed.onnx")
    check = verify_shape(tmp_path / "renamed.onnx", MODEL_DIR / "picodet_s_416_coco.onnx", card, None, probe_image())
    assert check.checks[0].passed  # native size: the same graph
    assert not check.passed and "does not run" in check.summary()


def test_picodet_320_and_416_files_hold_different_weights():
    """So the 320 file cannot serve as a same-weights reference for the 416 one at 320x320."""
    small, large = (load_onnx(MODEL_DIR / f"picodet_s_{s}_coco.onnx") for s in (320, 416))
    assert float_weights(large) == float_weights(load_onnx(MODEL_DIR / "picodet_s_416_coco.onnx"))
    assert float_weights(small) != float_weights(large)
    assert find_reference(get_card("picodet-s-416"), large) is None


@pytest.mark.parametrize("model", ["picodet-s-416", "yolox-nano"])
def test_variant_is_proven_and_runs_at_other_sizes(model, photos):
    res = optimize(model, dynamic_shape=True, progress=False)
    assert res.card.name == f"{model}-dyn" and res.shape_check.passed
    assert res.card.notes.endswith(f"dynamic shape: {res.shape_check.summary()}")
    labels = [c.label for c in res.shape_check.checks]
    assert labels[0].endswith("vs the original") and sum("on a photo" in lbl for lbl in labels) == 2
    det, base = Detector(res.path), Detector(model)
    assert fixed_size(det.backend) is None and fixed_size(base.backend) == (416, 416)
    assert det.input_size(640) == (640, 640) and det.input_size((300, 500)) == (320, 512)
    img = photos["astronaut"]
    (same,), (orig,) = det(img), base(img)  # native size: the original's boxes
    np.testing.assert_allclose(same.boxes.xyxy, orig.boxes.xyxy, atol=1e-2)
    for size in (320, (320, 416), 640):
        (r,) = det(img, imgsz=size, conf=0.5)
        assert r.input_size == ((size, size) if isinstance(size, int) else size)
        assert "person" in {r.names[int(c)] for c in r.boxes.cls}


def test_openvino_runs_the_variant_at_two_sizes(photos):
    pytest.importorskip("openvino")
    res = optimize("picodet-s-416", dynamic_shape=True, progress=False)
    det = Detector(res.path, backend="openvino")
    assert fixed_size(det.backend) is None
    ort = Detector(res.path, backend="onnxruntime")
    for size in ((320, 416), (480, 352)):
        (a,), (b,) = det(photos["astronaut"], imgsz=size), ort(photos["astronaut"], imgsz=size)
        assert a.input_size == size and len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy, atol=0.5)


def test_ultralytics_grids_are_rebuilt_and_a_dynamic_export_needs_no_rewrite(tmp_path, photos):
    """The zoo's YOLOv8n bakes anchor points and strides for 640x640; the rewrite computes them from the
    feature maps, as a ``dynamic=True`` Ultralytics export does. Such a file (simulated: the rewritten graph,
    no card) is read as variable-size and verified without a rewrite."""
    graph = load_onnx(MODEL_DIR / "yolov8n_int8.onnx")
    dyn, done = make_shape_dynamic(graph)
    assert done.grids == 3  # anchor points for Sub and Add, and the stride row
    onnx.save(dyn, tmp_path / "my_yolov8n.onnx")
    det = Detector(tmp_path / "my_yolov8n.onnx")  # bring-your-own: card from the Ultralytics metadata
    assert det.card.family == "ultralytics" and fixed_size(det.backend) is None
    (r,) = det(photos["astronaut"], imgsz=(544, 640), conf=0.5)
    assert r.input_size == (544, 640) and "person" in {r.names[int(c)] for c in r.boxes.cls}
    res = optimize(tmp_path / "my_yolov8n.onnx", dynamic_shape=True, out=tmp_path / "again.onnx", progress=False)
    assert res.shape_rewrite is None and res.shape_check.passed
    assert any("already has a symbolic height and width" in n for n in res.notes)


def test_fp16_with_dynamic_batch(tmp_path):
    res = optimize("yolox-nano", "fp16", dynamic_shape=True, dynamic_batch=True, out=tmp_path / "y.onnx",
                   progress=False)
    assert res.card.name == "yolox-nano-fp16-dyn-dynbatch" and res.card.precision == "fp16"
    assert res.shape_check.passed and res.batch_check.passed
    det = Detector(res.path)
    assert det.dynamic_batch and fixed_size(det.backend) is None


def test_cli_prints_the_proof_and_refuses_in_one_line(tmp_path):
    env = {"SPOTDET_MODEL_DIR": str(MODEL_DIR), "SPOTDET_CACHE_DIR": str(tmp_path / "c"), "NO_COLOR": "1",
           "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "spotdet.cli.main", "optimize", "yolox-nano", "--dynamic-shape",
                         "-o", str(tmp_path / "y.onnx")], env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "416x416 vs the original: ok" in ok.stdout and "on a photo: ok" in ok.stdout
    assert "yolox-nano-dyn" in ok.stdout
    bad = _graph([helper.make_node("Reshape", ["x", "s"], ["f"]), helper.make_node("Reshape", ["x", "s"], ["g"]),
                  helper.make_node("Concat", ["f", "g"], ["c"], axis=2), helper.make_node("Add", ["c", "b"], ["y"])],
                 {"s": np.array([1, 4, -1]), "b": np.zeros((1, 1, 48), np.float32)}, [1, 4, 48])
    bad.metadata_props.add(key="names", value="{0: 'a'}")
    onnx.save(bad, tmp_path / "bad.onnx")
    refused = subprocess.run([sys.executable, "-m", "spotdet.cli.main", "optimize", str(tmp_path / "bad.onnx"),
                              "--dynamic-shape", "--family", "yolox"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "per output cell" in refused.stderr or "per output cell" in refused.stdout
