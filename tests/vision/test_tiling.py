"""Tiling: windows, shifts and merges on small numpy inputs with known outputs; then a real model on a large
image, through the Detector, a real `spotdet serve` (?tile=true) and a batch job (--tile)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from spotdet.errors import UsageError
from spotdet.vision.tiling import (TilePolicy, axis_starts, greedy_nmm, intersection_over_smaller, merge_detections,
                                   merge_method, needs_tiles, shift_boxes, tile_windows)
from support.batch import cli_env, read_jsonl, run_spotdet
from support.serve import post_image, start_server  # noqa: F401  (fixture)


# -- geometry -----------------------------------------------------------------------------------------------
def test_axis_starts_step_by_tile_minus_overlap_and_end_at_the_edge():
    assert axis_starts(1000, 416, 0.2) == [0, 333, 584]  # step 416 - int(83.2) = 333; last moved back to 1000-416
    assert axis_starts(416, 416, 0.2) == [0]
    assert axis_starts(300, 416, 0.2) == [0]
    assert axis_starts(832, 416, 0.0) == [0, 416]


def test_windows_cover_the_image_row_by_row_and_stay_inside():
    win = tile_windows(500, 1000, (416, 416), 0.2)
    assert win.tolist() == [[0, 0, 416, 416], [333, 0, 749, 416], [584, 0, 1000, 416],
                            [0, 84, 416, 500], [333, 84, 749, 500], [584, 84, 1000, 500]]
    covered = np.zeros((500, 1000), bool)
    for x0, y0, x1, y1 in win:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_a_side_shorter_than_a_tile_gets_one_window_of_its_own_length():
    assert tile_windows(300, 900, (416, 416), 0.2).tolist() == [[0, 0, 416, 300], [333, 0, 749, 300],
                                                                 [484, 0, 900, 300]]
    assert tile_windows(400, 400, (416, 416), 0.2).tolist() == [[0, 0, 400, 400]]
    assert not needs_tiles(416, 416, (416, 416)) and needs_tiles(417, 100, (416, 416))


def test_windows_are_the_ones_sahi_slices():
    slicing = pytest.importorskip("sahi.slicing")
    for h, w, tile, overlap in [(1440, 1920, 416, 0.2), (3000, 4000, 640, 0.25), (500, 1000, 320, 0.1)]:
        ours = tile_windows(h, w, (tile, tile), overlap).tolist()
        theirs = slicing.get_slice_bboxes(h, w, tile, tile, False, overlap, overlap)
        assert sorted(ours) == sorted(theirs)


def test_shift_moves_tile_boxes_to_image_pixels():
    out = shift_boxes(np.array([[1, 2, 11, 22]], np.float32), (100, 50))
    assert out.tolist() == [[101, 52, 111, 72]] and out.dtype == np.float32


# -- merge --------------------------------------------------------------------------------------------------
def test_intersection_over_smaller_sees_a_part_inside_a_whole():
    whole = np.array([0, 0, 100, 100], float)
    parts = np.array([[0, 0, 40, 100], [90, 0, 190, 100], [200, 200, 210, 210]], float)
    np.testing.assert_allclose(intersection_over_smaller(whole, parts), [1.0, 0.1, 0.0])


def test_greedy_nmm_merges_a_cut_object_into_one_union_box_with_the_best_score():
    # the object at x 80-160 is cut by a tile border: seen as 80-120 in one tile (0.6), 100-160 in the next (0.9)
    boxes = np.array([[80, 10, 120, 50], [100, 10, 160, 50], [300, 10, 340, 50]], np.float32)
    scores = np.array([0.6, 0.9, 0.8], np.float32)
    assert greedy_nmm(boxes, scores, 0.5) == [(1, [0]), (2, [])]
    xyxy, conf, cls = merge_detections(boxes, scores, np.zeros(3, np.int64), "greedy_nmm", 0.5, 100)
    np.testing.assert_allclose(xyxy, [[80, 10, 160, 50], [300, 10, 340, 50]])
    np.testing.assert_allclose(conf, [0.9, 0.8])


def test_merges_are_class_aware_and_nms_keeps_the_best_box_unchanged():
    boxes = np.array([[0, 0, 100, 100], [0, 0, 50, 100], [0, 0, 50, 100]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    cls = np.array([0, 0, 1])
    xyxy, conf, ids = merge_detections(boxes, scores, cls, "greedy_nmm", 0.5, 100)
    assert ids.tolist() == [0, 1] and conf.tolist() == pytest.approx([0.9, 0.7])
    # IoU of the two class-0 boxes is 0.5: NMS at 0.4 suppresses the smaller, at 0.6 keeps both
    assert len(merge_detections(boxes, scores, cls, "nms", 0.4, 100)[0]) == 2
    assert len(merge_detections(boxes, scores, cls, "nms", 0.6, 100)[0]) == 3
    assert len(merge_detections(boxes, scores, cls, "nms", 0.6, 2)[0]) == 2  # max_det
    assert len(merge_detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), "nms", 0.5, 10)[0]) == 0


def test_greedy_nmm_matches_sahi_on_random_boxes():
    combine = pytest.importorskip("sahi.postprocess.combine")
    from sahi.prediction import ObjectPrediction

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (60, 2))], 1).astype(np.float32)
    scores = rng.uniform(0.1, 1.0, 60).astype(np.float32)
    cls = rng.integers(0, 3, 60)
    preds = [ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(c), score=float(s))
             for b, s, c in zip(boxes, scores, cls)]
    theirs = combine.GreedyNMMPostprocess(match_threshold=0.5, match_metric="IOS", class_agnostic=False)(preds)
    xyxy, conf, ids = merge_detections(boxes, scores, cls, "greedy_nmm", 0.5, 1000)
    want = sorted((p.category.id, round(p.score.value, 4), *(round(float(v), 1) for v in p.bbox.to_xyxy()))
                  for p in theirs)
    got = sorted((int(c), round(float(s), 4), *(round(float(v), 1) for v in b)) for b, s, c in zip(xyxy, conf, ids))
    assert len(got) < len(boxes) and got == want


def test_auto_merge_follows_sahi_low_confidence_switch_and_policy_checks_values():
    assert merge_method("auto", 0.25) == "greedy_nmm" and merge_method("auto", 0.001) == "nms"
    assert merge_method("nms", 0.5) == "nms"
    for bad in ({"overlap": 1.0}, {"merge": "wbf"}, {"match_threshold": 0}, {"size": (0, 10)}):
        with pytest.raises(UsageError):
            TilePolicy(**bad)
    with pytest.raises(UsageError, match="resolve auto"):
        merge_detections(np.zeros((1, 4)), np.ones(1), np.zeros(1), "auto", 0.5, 10)


# -- a real model -------------------------------------------------------------------------------------------
CAT_BOX = (1400, 960, 1625, 1110)  # where big_scene() puts the cat, x1 y1 x2 y2


def big_scene(photos) -> np.ndarray:
    """A 1920x1440 grey frame with the cat photo shrunk to 225x150 near the bottom-right corner."""
    frame = np.full((1440, 1920, 3), 114, np.uint8)
    x1, y1, x2, y2 = CAT_BOX
    frame[y1:y2, x1:x2] = cv2.resize(photos["chelsea"], (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
    return frame


def best_iou(result, cls: int, box) -> float:
    b = np.asarray(box, float)
    ious = [0.0]
    for xyxy, c in zip(result.boxes.xyxy, result.boxes.cls):
        if int(c) == cls:
            iw = max(0.0, min(xyxy[2], b[2]) - max(xyxy[0], b[0]))
            ih = max(0.0, min(xyxy[3], b[3]) - max(xyxy[1], b[1]))
            inter = iw * ih
            ious.append(inter / ((xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
    return max(ious)


def test_tiled_detector_finds_a_small_cat_in_a_large_frame(detectors, photos):
    det = detectors("picodet-s-416")
    frame = big_scene(photos)
    whole, tiled = det(frame, conf=0.3)[0], det(frame, conf=0.3, tile=True)[0]
    n_windows = len(tile_windows(1440, 1920, (416, 416), 0.2))
    assert tiled.passes == [(416, 416)] * (n_windows + 1) and tiled.input_pixels == (n_windows + 1) * 416 * 416
    assert whole.passes == [(416, 416)]
    assert best_iou(tiled, 15, CAT_BOX) > 0.7 > best_iou(whole, 15, CAT_BOX)
    assert tiled.orig_shape == (1440, 1920) and tiled.orig_img is frame
    assert set(tiled.timings) >= {"decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "total_ms"}
    assert tiled.timings["infer_ms"] > whole.timings["infer_ms"]
    assert tiled.to_dict()["input_sizes"] == [[416, 416]] * (n_windows + 1)


def test_an_image_no_larger_than_a_tile_takes_the_whole_image_pass_only(detectors, photos):
    det = detectors("yolox-nano")
    img = photos["chelsea"][:300, :400]
    tiled, plain = det(img, tile=True)[0], det(img)[0]
    assert tiled.passes == [(416, 416)]
    np.testing.assert_allclose(tiled.boxes.xyxy, plain.boxes.xyxy)


def test_tile_policy_is_set_on_the_detector(photos):
    from spotdet import Detector

    det = Detector("picodet-s-416")
    det.tile_policy = TilePolicy(size=(800, 800), overlap=0.0, whole_image=False)
    result = det(big_scene(photos), tile=True)[0]
    assert len(result.passes) == len(tile_windows(1440, 1920, (800, 800), 0.0)) == 6


def test_serve_tiles_when_asked(start_server, photos):
    server = start_server("--model", "picodet-s-416", "--price-per-hour", "3.6")
    data = cv2.imencode(".jpg", big_scene(photos))[1].tobytes()
    plain, tiled = post_image(server.url, data), post_image(server.url, data, tile="true")
    assert plain.status_code == tiled.status_code == 200, tiled.text
    one, many = plain.json(), tiled.json()
    one, many = one.get("results", [one])[0], many.get("results", [many])[0]
    assert len(one["input_sizes"]) == 1 and len(many["input_sizes"]) > 20
    assert many["input_pixels"] == len(many["input_sizes"]) * 416 * 416
    assert "cat" in {d["class_name"] for d in many["detections"]}
    assert 400 <= post_image(server.url, data, tile="maybe").status_code < 500  # a clear client error


def test_batch_job_tiles_with_the_flag(tmp_path, photos):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "scene.jpg"), big_scene(photos))
    cv2.imwrite(str(folder / "small.jpg"), photos["chelsea"][:300, :400])
    proc = run_spotdet(cli_env(tmp_path / "cache"), "batch", "run", folder, "--out", tmp_path / "job",
                       "--model", "picodet-s-416", "--tile", "--conf", "0.3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = {line["path"].rsplit("/", 1)[-1]: line for line in read_jsonl(tmp_path / "job" / "results.jsonl")}
    assert len(lines["scene.jpg"]["input_sizes"]) > 20 and len(lines["small.jpg"]["input_sizes"]) == 1
    assert "cat" in {d["class_name"] for d in lines["scene.jpg"]["detections"]}
    status = json.loads(run_spotdet(cli_env(tmp_path / "cache"), "batch", "status", tmp_path / "job",
                                    "--json").stdout)
    assert status["spec"]["options"]["tile"] is True
