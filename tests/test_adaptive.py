"""Adaptive resolution: the escalation rule on known boxes, then a real variable-size model through the
Detector, a real `spotdet serve` (?imgsz=auto) and a batch job (--imgsz auto)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spotdet.adaptive import AdaptivePolicy, apparent_sizes, escalation_reason
from spotdet.errors import UsageError
from spotdet.results import Boxes, Result
from support.batch import cli_env, read_jsonl, run_spotdet
from support.serve import post_image, start_server  # noqa: F401  (fixture)

POLICY = AdaptivePolicy(small=320, large=512, evidence_conf=0.5, object_size=64, min_objects=2)
DEFAULT = AdaptivePolicy()
S, L = DEFAULT.small, DEFAULT.large  # what a Detector escalates between unless told otherwise
BIG, MEDIUM = [0, 0, 300, 300], [10, 10, 110, 90]  # on 640x480 at 320: 150x200 -> 173 px; 50x40 -> 45 px


def result(boxes: list[list[float]], scores: list[float], shape=(480, 640)) -> Result:
    """A small pass's Result on a ``shape`` image (h, w), boxes in its pixels."""
    return Result(Boxes(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                        np.zeros(len(scores), np.int64)), {0: "thing"}, shape)


def test_apparent_size_is_the_root_of_the_area_stretched_to_the_input():
    r = result([[0, 0, 64, 96], [0, 0, 320, 48]], [0.9, 0.9])  # on 640x480: at 320 -> 32x64 and 160x32
    np.testing.assert_allclose(apparent_sizes(r, 320), [np.sqrt(32 * 64), np.sqrt(160 * 32)], rtol=1e-6)


def test_an_empty_or_unsure_small_pass_is_kept():
    assert escalation_reason(result([], []), POLICY) is None  # nothing found: the large input gains nothing
    assert escalation_reason(result([MEDIUM, MEDIUM], [0.49, 0.3]), POLICY) is None  # not sure enough


def test_large_sure_objects_keep_the_small_pass():
    assert escalation_reason(result([BIG, [300, 0, 600, 400]], [0.9, 0.8]), POLICY) is None


def test_two_sure_medium_objects_escalate_and_one_does_not():
    assert escalation_reason(result([BIG, MEDIUM], [0.9, 0.8]), POLICY) is None
    reason = escalation_reason(result([BIG, MEDIUM, MEDIUM], [0.9, 0.8, 0.6]), POLICY)
    assert reason is not None and "2 object(s)" in reason and "under 64 px" in reason
    assert escalation_reason(result([BIG, MEDIUM], [0.9, 0.8]), AdaptivePolicy(min_objects=1)) is not None
    assert escalation_reason(result([MEDIUM, MEDIUM], [0.9, 0.8]), AdaptivePolicy(object_size=40)) is None


@pytest.mark.parametrize("bad", [{"small": 640, "large": 320}, {"small": 16}, {"evidence_conf": 1.0},
                                 {"min_objects": 0}, {"object_size": 0}])
def test_policy_refuses_impossible_values(bad):
    with pytest.raises(UsageError):
        AdaptivePolicy(**bad)


# -- a real variable-size model -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dyn_model(tmp_path_factory) -> str:
    """picodet-s-416 rewritten for a variable input size (`spotdet optimize --dynamic-shape`), card beside it."""
    from spotdet.optimize.api import optimize

    out = tmp_path_factory.mktemp("dyn") / "picodet-s-416-dyn.onnx"
    return str(optimize("picodet-s-416", dynamic_shape=True, out=out, progress=False).path)


@pytest.fixture(scope="module")
def dyn_detector(dyn_model):
    from spotdet import Detector

    return Detector(dyn_model, backend="onnxruntime")


@pytest.fixture(scope="module")
def busy(val_images) -> np.ndarray:
    """A COCO street photo in which picodet at 320 is sure of four or more objects under 48 px."""
    path = next(p for p in val_images if p.name == "000000017627.jpg")
    return cv2.imread(str(path))


def test_a_frame_filling_cat_and_an_empty_frame_stay_small_and_a_busy_street_escalates(dyn_detector, photos,
                                                                                          busy):
    det = dyn_detector
    cat = det(photos["chelsea"], imgsz="auto")[0]
    assert cat.passes == [(S, S)] and cat.input_pixels == S * S
    assert "cat" in {cat.names[int(c)] for c in cat.boxes.cls}
    empty = det(np.full((480, 640, 3), 114, np.uint8), imgsz="auto")[0]
    assert empty.passes == [(S, S)]
    many = det(busy, imgsz="auto")[0]
    assert many.passes == [(S, S), (L, L)] and many.input_pixels == S * S + L * L
    assert many.to_dict()["input_sizes"] == [[S, S], [L, L]] and many.input_size == (S, S)


def test_an_escalated_image_returns_the_large_pass_and_the_policy_is_settable(dyn_model, photos):
    from spotdet import Detector

    det = Detector(dyn_model, backend="onnxruntime")
    det.adaptive_policy = AdaptivePolicy(small=256, large=512, evidence_conf=0.0, object_size=1e6,
                                         min_objects=1)  # any box at all escalates
    img = photos["astronaut"]
    auto, large = det(img, imgsz="auto")[0], det(img, imgsz=512)[0]
    assert auto.passes == [(256, 256), (512, 512)]
    np.testing.assert_allclose(auto.boxes.xyxy, large.boxes.xyxy)
    assert auto.timings["infer_ms"] > large.timings["infer_ms"] * 0.5  # both passes' time is counted


def test_serve_chooses_the_size_per_image(start_server, dyn_model, photos, busy):
    server = start_server("--model", dyn_model, "--price-per-hour", "3.6")
    cat = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    many = cv2.imencode(".jpg", busy)[1].tobytes()
    r1, r2 = post_image(server.url, cat, imgsz="auto"), post_image(server.url, many, imgsz="auto")
    assert r1.status_code == r2.status_code == 200, r2.text
    one, two = r1.json(), r2.json()
    one, two = one.get("results", [one])[0], two.get("results", [two])[0]
    assert one["input_sizes"] == [[S, S]] and "cat" in {d["class_name"] for d in one["detections"]}
    assert two["input_sizes"] == [[S, S], [L, L]] and two["input_pixels"] == S * S + L * L


def test_serve_refuses_auto_on_a_fixed_size_model(start_server, photos):
    server = start_server("--model", "fastestdet")
    resp = post_image(server.url, cv2.imencode(".jpg", photos["chelsea"])[1].tobytes(), imgsz="auto")
    assert resp.status_code == 400 and "--dynamic-shape" in resp.text


def test_batch_job_with_imgsz_auto(tmp_path, dyn_model, photos, busy):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "cat.jpg"), photos["chelsea"])
    cv2.imwrite(str(folder / "busy.jpg"), busy)
    proc = run_spotdet(cli_env(tmp_path / "cache"), "batch", "run", folder, "--out", tmp_path / "job",
                       "--model", dyn_model, "--imgsz", "auto", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = {line["path"].rsplit("/", 1)[-1]: line for line in read_jsonl(tmp_path / "job" / "results.jsonl")}
    assert lines["cat.jpg"]["input_sizes"] == [[S, S]]
    assert lines["busy.jpg"]["input_sizes"] == [[S, S], [L, L]]
