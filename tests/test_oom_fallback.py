"""Out-of-memory fallback of Detector.infer: split the batch, then shrink the input (dynamic models only).

The model is a real (tiny, random-weight) ONNX graph in the Ultralytics layout with symbolic batch and
image dimensions; allocation failures are injected at the backend boundary with the message ONNX Runtime
gives, since a real allocation failure cannot be provoked reliably in a test.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spotdet import Detector, ResourceExhaustedError
from spotdet.models.card import ModelCard, PreprocessSpec
from support.oom import AllocationLimit


def tiny_dynamic_model(path):
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 84, "n"])
    weight = numpy_helper.from_array(rng.normal(0, 0.5, (84, 3, 8, 8)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, 84, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["images", "w"], ["conv"], strides=[8, 8]),
             helper.make_node("Sigmoid", ["conv"], ["sig"]),
             helper.make_node("Reshape", ["sig", "shape"], ["flat"]),
             helper.make_node("Mul", ["flat", "scale"], ["output0"])]
    scale = numpy_helper.from_array(np.array([[[64.0]] * 4 + [[1.0]] * 80], np.float32), "scale")
    graph = helper.make_graph(nodes, "tiny", [x], [y], [weight, shape, scale])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.fixture()
def detector(tmp_path):
    path = tmp_path / "tiny.onnx"
    tiny_dynamic_model(path)
    card = ModelCard(name="tiny", family="ultralytics", file=str(path), input_size=(64, 64),
                     names=tuple(f"c{i}" for i in range(80)),
                     preprocess=PreprocessSpec("letterbox", "center", 114, "rgb", (0, 0, 0), (255, 255, 255)),
                     decoder={"stride": 16})
    return Detector(card, conf=0.5)


def images(n):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (60 + 4 * i, 80, 3), dtype=np.uint8) for i in range(n)]


def test_batch_is_split_and_results_are_unchanged(detector):
    prepared = [detector.prepare(img) for img in images(4)]
    settings = detector.options
    assert detector.dynamic_batch
    expected = detector.infer(prepared, settings)
    assert {r.batch_size for r in expected} == {4} and all(len(r) > 0 for r in expected)
    limit = AllocationLimit(detector.backend, max_batch=2)
    got = detector.infer(prepared, settings)
    assert [s[0] for s in limit.calls] == [4, 2, 2]
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy, rtol=1e-5)
        assert a.notes == ["out of memory at batch 4: split into 2+2"] and a.batch_size == 2


def test_single_image_is_retried_smaller_then_gives_up(detector):
    prepared = [detector.prepare(images(1)[0])]
    limit = AllocationLimit(detector.backend, max_side=48)
    result = detector.infer(prepared, detector.options)[0]
    assert [s[2:] for s in limit.calls] == [(64, 64), (48, 48)]
    assert result.notes == ["out of memory at 64x64: retried at 48x48"]
    assert result.orig_shape == (60, 80)
    AllocationLimit(detector.backend, max_side=1)
    with pytest.raises(ResourceExhaustedError, match="out of memory"):
        detector.infer(prepared, detector.options)


def test_other_runtime_errors_are_not_swallowed(detector):
    def broken(tensor):
        raise RuntimeError("some other failure")

    detector.backend.run = broken
    with pytest.raises(RuntimeError, match="some other failure"):
        detector.infer([detector.prepare(images(1)[0])], detector.options)
