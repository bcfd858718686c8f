"""Bring-your-own ONNX files: cards inferred from metadata/shape, clear errors for unknown layouts."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from support.paths import MODEL_DIR
from spotdet import Detector, UnsupportedModelError
from spotdet.models.byo import card_from_onnx


def test_ultralytics_export_is_read_from_its_metadata():
    card = card_from_onnx(MODEL_DIR / "yolo11n_int8.onnx")
    assert card.family == "ultralytics"
    assert card.input_size == (640, 640)
    assert card.names[0] == "person" and len(card.names) == 80
    assert card.decoder["stride"] == 32


def test_byo_path_detects_the_same_as_the_zoo_card(photos):
    own = Detector(str(MODEL_DIR / "yolov8n_int8.onnx"))
    zoo = Detector("yolov8n-int8")
    a, b = own(photos["coffee"])[0], zoo(photos["coffee"])[0]
    assert len(a) > 0
    np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy, atol=1e-3)
    assert a.boxes.cls.tolist() == b.boxes.cls.tolist()


def test_yolox_export_needs_the_family_and_then_works(photos):
    path = MODEL_DIR / "yolox_nano.onnx"
    with pytest.raises(UnsupportedModelError) as info:
        card_from_onnx(path)
    assert "ultralytics" in str(info.value) and "yolox" in str(info.value)
    det = Detector(str(path), family="yolox")
    names = {det.names[c] for c in det(photos["chelsea"])[0].boxes.cls.tolist()}
    assert "cat" in names


def _tiny_model(path, out_shape):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)
    shape = helper.make_tensor("shape", TensorProto.INT64, [len(out_shape)], out_shape)
    graph = helper.make_graph([helper.make_node("Reshape", ["images", "shape"], ["out"])], "g", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.metadata_props.add(key="task", value="detect")
    onnx.save(model, str(path))


def test_unknown_layout_names_the_supported_families(tmp_path):
    path = tmp_path / "odd.onnx"
    _tiny_model(path, [1, 3, 4096])  # 3 channels: not 4 + classes
    with pytest.raises(UnsupportedModelError) as info:
        Detector(str(path))
    assert "Ultralytics" in str(info.value)


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("hello")
    with pytest.raises(UnsupportedModelError, match="not a readable ONNX"):
        Detector(str(path))
