"""Result owns serialisation: one dict shape, COCO entries, unit-suffixed timings (synthetic boxes, exact values)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from spotdet.results import TIMING_KEYS, Boxes, Result


def make_result() -> Result:
    boxes = Boxes(np.array([[10.0, 20.0, 110.0, 70.0], [0.5, 1.25, 3.5, 9.0]], np.float32),
                  np.array([0.9, 0.123456789], np.float32), np.array([0, 15]))
    timings = {"decode_ms": 1.0, "preprocess_ms": 0.5, "infer_ms": 8.0, "postprocess_ms": 0.25, "total_ms": 9.75}
    return Result(boxes, {0: "person", 15: "cat"}, (480, 640), path="a.jpg", model="m", timings=timings,
                  batch_size=4, input_size=(416, 416))


def test_to_dict_is_the_one_shape():
    data = make_result().to_dict()
    assert list(data) == ["path", "model", "width", "height", "input_size", "input_sizes", "input_pixels", "batch_size",
                          "detections", "timings"]
    assert data["input_sizes"] == [[416, 416]] and data["input_pixels"] == 416 * 416
    assert (data["width"], data["height"], data["input_size"], data["batch_size"]) == (640, 480, [416, 416], 4)
    assert data["detections"][0] == {"class_id": 0, "class_name": "person", "confidence": 0.9,
                                     "box": {"x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 70.0}}
    assert data["detections"][1]["confidence"] == pytest.approx(0.12346) and data["detections"][1]["class_name"] == "cat"
    assert list(data["timings"]) == list(TIMING_KEYS) == ["decode_ms", "preprocess_ms", "infer_ms",
                                                          "postprocess_ms", "total_ms"]
    assert json.loads(make_result().to_json()) == data


def test_notes_appear_only_when_there_are_some():
    result = make_result()
    assert "notes" not in result.to_dict()
    result.notes.append("out of memory at batch 4: split into 2+2")
    assert result.to_dict()["notes"] == ["out of memory at batch 4: split into 2+2"]


def test_to_coco_uses_xywh_and_the_category_map():
    entries = make_result().to_coco(image_id=7, category_ids={0: 1, 15: 17})
    assert entries[0] == {"image_id": 7, "category_id": 1, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.9}
    assert entries[1]["category_id"] == 17 and entries[1]["bbox"] == [0.5, 1.25, 3.0, 7.75]
    # a class the dataset does not have is left out, not given a made-up id
    assert [e["category_id"] for e in make_result().to_coco(7, {15: 17})] == [17]


def test_empty_result():
    result = Result(Boxes.empty(), {0: "person"}, (10, 20))
    assert result.to_dict()["detections"] == [] and result.to_coco(1, {0: 1}) == [] and len(result) == 0


def test_frame_is_serialised_only_when_set():
    result = make_result()
    result.frame = 12
    data = result.to_dict()
    assert data["frame"] == 12 and list(data)[:3] == ["path", "frame", "model"]
    result.frame = 0  # frame 0 is a frame, not "no frame"
    assert result.to_dict()["frame"] == 0


def test_repr_is_short_and_says_what_was_found():
    result = make_result()
    assert repr(result) == "<Result a.jpg: m, 640x480, 2 detection(s) (1 person, 1 cat), 9.8 ms>"
    result.frame = 3
    assert repr(result).startswith("<Result a.jpg frame 3: m,")
    assert repr(Result(Boxes.empty(), {}, (10, 20))) == "<Result: model?, 20x10, 0 detection(s) (no detections)>"


def test_save_txt_writes_normalised_yolo_lines(tmp_path):
    result = make_result()  # 640x480: box 0 is x 10..110, y 20..70
    lines = result.save_txt(tmp_path / "labels" / "a.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["0", "15"]
    values = np.array([[float(v) for v in line.split()[1:]] for line in lines])
    assert values[0] == pytest.approx([60 / 640, 45 / 480, 100 / 640, 50 / 480], rel=1e-5)
    # back to pixels: the boxes, to the precision of the 6 significant digits written
    cx, cy, w, h = (values * [640, 480, 640, 480]).T
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    assert xyxy == pytest.approx(result.boxes.xyxy, abs=1e-3)
    with_conf = result.save_txt(tmp_path / "c.txt", save_conf=True).read_text().splitlines()
    assert [float(line.split()[5]) for line in with_conf] == pytest.approx([0.9, 0.123457], abs=1e-6)
    empty = Result(Boxes.empty(), {0: "person"}, (10, 20)).save_txt(tmp_path / "e.txt")
    assert empty.read_text() == ""  # a negative image has an empty label file, not none


@pytest.fixture
def real_result(detectors, photos):
    result = detectors("yolox-nano")(photos["astronaut"], conf=0.1)[0]
    assert len(result) >= 2  # several boxes, so order and class mix-ups would show
    return result


def test_to_supervision_round_trips_and_annotates(real_result, photos):
    sv = pytest.importorskip("supervision")
    detections = real_result.to_supervision()
    assert isinstance(detections, sv.Detections) and len(detections) == len(real_result)
    np.testing.assert_array_equal(detections.xyxy, real_result.boxes.xyxy)
    np.testing.assert_array_equal(detections.confidence, real_result.boxes.conf)
    np.testing.assert_array_equal(detections.class_id, real_result.boxes.cls)
    assert list(detections.data["class_name"]) == [real_result.names[int(c)] for c in real_result.boxes.cls]
    detections.xyxy[0, 0] += 5  # a copy: changing it leaves the Result alone
    assert detections.xyxy[0, 0] != real_result.boxes.xyxy[0, 0]
    image = photos["astronaut"].copy()
    annotated = sv.LabelAnnotator().annotate(sv.BoxAnnotator().annotate(image.copy(), real_result.to_supervision()),
                                             real_result.to_supervision())
    assert annotated.shape == image.shape and (annotated != image).any(axis=2).mean() > 0.005


def test_supervision_from_ultralytics_reads_a_result_as_it_is(real_result):
    sv = pytest.importorskip("supervision")
    detections = sv.Detections.from_ultralytics(real_result)
    expected = real_result.to_supervision()
    for field in ("xyxy", "confidence", "class_id"):
        np.testing.assert_array_equal(getattr(detections, field), getattr(expected, field))
    assert list(detections.data["class_name"]) == list(expected.data["class_name"])
    assert detections.mask is None and detections.tracker_id is None


def test_to_supervision_without_the_extra_names_it(monkeypatch):
    from spotdet.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "supervision", None)  # import supervision -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'spotdet\[supervision\]'") as caught:
        make_result().to_supervision()
    assert caught.value.extra == "supervision" and caught.value.exit_code == 2
