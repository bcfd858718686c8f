"""Result owns serialisation: one dict shape, COCO entries, unit-suffixed timings (synthetic boxes, exact values)."""

from __future__ import annotations

import json

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
