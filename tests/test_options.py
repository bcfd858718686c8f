"""DetectOptions: one validated options object; names and ids for classes; the same errors everywhere."""

from __future__ import annotations

import pytest

from spotdet import Detector, UsageError
from spotdet.options import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, DetectOptions, parse_classes

MODEL = "yolox-nano"
COCO_NAMES = {0: "person", 1: "bicycle", 2: "car", 15: "cat"}


def test_defaults_are_the_documented_ones():
    opts = DetectOptions()
    assert (opts.conf, opts.iou, opts.max_det, opts.classes, opts.imgsz) == (0.25, 0.6, 300, None, None)
    assert (DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET) == (0.25, 0.6, 300)


@pytest.mark.parametrize("field, value, fragment", [
    ("conf", 1.0, "conf must be in [0, 1)"), ("conf", -0.1, "conf"), ("iou", 0.0, "iou must be in (0, 1]"),
    ("iou", 1.5, "iou"), ("max_det", 0, "max_det"), ("max_det", 2.5, "max_det"), ("imgsz", 16, "imgsz"),
    ("imgsz", (320, 0), "imgsz"), ("imgsz", "big", "imgsz"), ("classes", [], "classes is empty"),
    ("classes", [-1], "class ids"), ("classes", [1.5], "class ids"),
])
def test_bad_values_are_refused_with_the_field_named(field, value, fragment):
    with pytest.raises(UsageError) as info:
        DetectOptions(**{field: value})
    assert fragment in str(info.value)


def test_create_applies_only_given_overrides_and_stays_frozen():
    base = DetectOptions(conf=0.4, classes=("person",))
    opts = DetectOptions.create(base, conf=None, iou=0.5)
    assert (opts.conf, opts.iou, opts.classes) == (0.4, 0.5, ("person",))
    with pytest.raises(AttributeError):
        opts.conf = 0.1  # type: ignore[misc]
    with pytest.raises(UsageError, match="unknown detection option"):
        DetectOptions.create(confidence=0.3)


def test_classes_by_name_and_id_resolve_to_ids():
    assert parse_classes(" person, 2,car ") == ("person", 2, "car")
    opts = DetectOptions(classes=parse_classes("person,2,cat"))
    assert opts.class_ids(COCO_NAMES) == (0, 2, 15)
    assert DetectOptions().class_ids(COCO_NAMES) is None
    with pytest.raises(UsageError, match="unknown class 'dog'"):
        DetectOptions(classes=("dog",)).class_ids(COCO_NAMES)
    with pytest.raises(UsageError, match="unknown class 99"):
        DetectOptions(classes=(99,)).class_ids(COCO_NAMES)


def test_round_trip_through_a_dict():
    opts = DetectOptions(conf=0.3, classes=("person", 2), imgsz=(320, 416))
    assert DetectOptions.from_dict(opts.to_dict()) == opts
    assert DetectOptions(imgsz=(320, 320)).imgsz == 320  # a square size is stored as one int


def test_class_names_work_in_python_as_over_http(detectors, photos):
    det = detectors(MODEL)
    everything = det(photos["astronaut"], conf=0.2)[0]
    assert "person" in [d["class_name"] for d in everything.detections()]
    people = det(photos["astronaut"], conf=0.2, classes=["person"])[0]
    assert len(people) > 0 and {d["class_name"] for d in people.detections()} == {"person"}
    assert det(photos["astronaut"], conf=0.2, classes=[0])[0].boxes.xyxy.tolist() == people.boxes.xyxy.tolist()


def test_detector_defaults_come_from_its_options(detectors, photos):
    det = Detector(MODEL, conf=0.6, classes=["cat"])
    assert det.options == DetectOptions(conf=0.6, classes=("cat",))
    result = det(photos["chelsea"])[0]
    assert len(result) > 0 and all(d["confidence"] >= 0.6 and d["class_name"] == "cat" for d in result.detections())
    with pytest.raises(UsageError, match="unknown class 'kitten'"):
        Detector(MODEL, classes=["kitten"])


def test_imgsz_on_fixed_input_model(detectors, photos):
    det, cat = detectors(MODEL), photos["chelsea"]
    with pytest.raises(UsageError) as excinfo:
        det(cat, imgsz=640)
    message = str(excinfo.value)
    assert "416" in message and "640" in message
    # the model's own size is accepted
    assert det(cat)[0].orig_shape == (300, 451)
    assert det(cat, imgsz=416)[0].orig_shape == (300, 451)


def test_conf_out_of_range_at_construction():
    with pytest.raises(UsageError) as excinfo:
        Detector(MODEL, conf=1.5)
    assert "conf" in str(excinfo.value) and "1.5" in str(excinfo.value)


def test_conf_out_of_range_at_call(detectors, photos):
    det, cat = detectors(MODEL), photos["chelsea"]
    with pytest.raises(UsageError) as excinfo:
        det(cat, conf=1.5)
    assert "conf" in str(excinfo.value) and "1.5" in str(excinfo.value)
