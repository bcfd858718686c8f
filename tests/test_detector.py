"""Detection on real photos with every zoo model (every family), and the Result API."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from support.paths import ZOO_MODELS

EXPECTED = {"chelsea": "cat", "astronaut": "person", "coffee": "cup"}


@pytest.mark.parametrize("model", ZOO_MODELS)
def test_known_objects_are_found(model, detectors, photos):
    det = detectors(model)
    results = det(list(photos.values()))
    assert len(results) == 3
    for (photo, img), result in zip(photos.items(), results):
        names = [result.names[c] for c in result.boxes.cls.tolist()]
        assert EXPECTED[photo] in names, (model, photo, names)
        top = names.index(EXPECTED[photo])
        assert result.boxes.conf[top] >= 0.25
        h, w = img.shape[:2]
        assert result.orig_shape == (h, w)
        xyxy = result.boxes.xyxy
        assert (xyxy[:, 0] >= 0).all() and (xyxy[:, 2] <= w).all() and (xyxy[:, 3] <= h).all()
        assert (xyxy[:, 2] > xyxy[:, 0]).all()


def test_cat_box_covers_the_cat(detectors, photos):
    # chelsea.png: the cat fills most of the 451x300 frame.
    result = detectors("picodet-s-416")(photos["chelsea"])[0]
    x1, y1, x2, y2 = result.boxes.xyxy[result.boxes.cls.tolist().index(15)]
    assert (x2 - x1) * (y2 - y1) > 0.4 * 451 * 300


def test_sources_of_every_kind_give_the_same_detections(detectors, photos, tmp_path):
    det = detectors("yolox-nano")
    bgr = photos["astronaut"]
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), bgr)
    pil = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    results = det([str(path), path, path.read_bytes(), bgr, pil])
    ref = results[3]
    for r in results:
        np.testing.assert_allclose(r.boxes.xyxy, ref.boxes.xyxy, atol=1e-3)
    assert results[0].path == str(path)


def test_result_json_save_and_timings(detectors, photos, tmp_path):
    result = detectors("yolox-nano")(photos["coffee"], conf=0.3)[0]
    data = json.loads(result.to_json())
    assert data["width"] == 600 and data["height"] == 400 and data["model"] == "yolox-nano"
    assert {d["class_name"] for d in data["detections"]} >= {"cup"}
    assert all(d["confidence"] >= 0.3 for d in data["detections"])
    assert list(data["timings"]) == ["decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "total_ms"]
    assert data["timings"]["infer_ms"] > 0
    stages = sum(data["timings"][k] for k in ("decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms"))
    assert data["timings"]["total_ms"] == pytest.approx(stages, abs=0.01)
    assert data["input_size"] == [416, 416] and data["batch_size"] == 1
    out = result.save(tmp_path / "sub" / "coffee.jpg")
    drawn = cv2.imread(str(out))
    assert drawn.shape == photos["coffee"].shape
    assert np.abs(drawn.astype(int) - photos["coffee"].astype(int)).mean() > 1.0  # boxes were drawn


def test_class_filter_and_max_det(detectors, photos):
    det = detectors("picodet-s-416")
    only_cups = det(photos["coffee"], classes=[41], conf=0.1)[0]
    assert len(only_cups) > 0 and set(only_cups.boxes.cls.tolist()) == {41}
    assert len(det(photos["coffee"], conf=0.05, max_det=2)[0]) == 2


def test_stream_skips_unreadable_sources_when_asked(detectors, photos, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    errors = []
    results = list(detectors("yolox-nano").stream([photos["chelsea"], str(bad), photos["coffee"]],
                                                  on_error=lambda src, exc: errors.append((src, exc))))
    assert len(results) == 2 and len(errors) == 1 and errors[0][0] == str(bad)


def test_multi_pass_options_go_through_detect_passes_and_one_pass_options_do_not(detectors, photos):
    from spotdet.errors import UsageError
    from spotdet.options import DetectOptions

    det = detectors("yolox-nano")
    img = photos["coffee"]  # 600x400: larger than a 416 tile
    streamed = next(det.stream([img], tile=True))
    direct = det.detect_passes(img, None, {"decode_ms": 0.0}, DetectOptions(tile=True))
    assert len(streamed.passes) == len(direct.passes) > 1
    np.testing.assert_allclose(streamed.boxes.xyxy, direct.boxes.xyxy)
    with pytest.raises(UsageError, match="one pass"):
        det.detect_passes(img, None, {"decode_ms": 0.0}, DetectOptions())


def test_a_backend_object_is_used_as_given(detectors, photos):
    """A Backend built by the caller (the Ray ingress passes a shape-only one) replaces the runtime choice."""
    from spotdet import Detector

    det = detectors("yolox-nano")
    calls = []

    class Counting:  # the Backend protocol, over the real session
        name, provider, input_shape = "counting", "test", det.backend.input_shape

        def run(self, tensor):
            calls.append(tensor.shape)
            return det.backend.run(tensor)

        def is_out_of_memory(self, exc):
            return False

    mine = Detector(det.ref, backend=Counting())
    res = mine(photos["chelsea"])[0]
    assert calls == [(1, 3, 416, 416)] and mine.provider == "test"
    assert [mine.names[int(c)] for c in res.boxes.cls] == [det.names[int(c)] for c in det(photos["chelsea"])[0].boxes.cls]


def test_a_detector_used_with_classes_is_freed_when_dropped(photos):
    """Nothing outside a Detector keeps it (and its runtime session) alive once the caller drops it: a service
    scaling to zero frees its models. (A cache on a method, such as functools.lru_cache, is the class's and
    holds every instance it saw.)"""
    import gc
    import weakref

    from spotdet import Detector

    det = Detector("fastestdet")
    result = det(photos["chelsea"], classes=["cat"])[0]
    assert {result.names[int(c)] for c in result.boxes.cls} <= {"cat"}
    ref = weakref.ref(det)
    del det
    gc.collect()
    assert ref() is None, "the dropped Detector is still referenced"
