"""What an evaluation report says beyond mAP: COCO's 12 figures by name, AP per class, PR curves, input pixels.

Hand-made annotations with known answers (a perfect class scores 100, a missed one 0), and the real model on
coco-val-dev, where the per-class APs must average to the mAP COCOeval printed: both come from the same array.
"""

from __future__ import annotations

import json

import pytest

from spotdet.errors import UsageError
from spotdet.eval.coco import STAT_KEYS, evaluate, evaluate_results_file, load_dataset
from support.paths import VAL_DIR

MODEL = "fastestdet"


def write_dataset(tmp_path, annotations, images=2):
    """A dataset folder (annotations only: results files need no pixels) with cat (id 1) and dog (id 5)."""
    folder = tmp_path / "data"
    folder.mkdir()
    meta = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(1, images + 1)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 9, "name": "unused"}],
            "annotations": annotations}
    (folder / "instances.json").write_text(json.dumps(meta))
    return folder


def write_results(tmp_path, detections):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(detections))
    return path


CAT = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 80, 60]}
DOGS = [{"image_id": 2, "category_id": 5, "bbox": [100, 100, 50, 50]},
        {"image_id": 2, "category_id": 5, "bbox": [20, 20, 40, 40]}]


def test_per_class_ap_of_a_found_and_a_missed_class(tmp_path):
    data = write_dataset(tmp_path, [CAT, *DOGS])
    # the cat is found exactly; the only "dog" box is far from both dogs
    results = write_results(tmp_path, [{**CAT, "score": 0.9},
                                       {"image_id": 2, "category_id": 5, "bbox": [150, 0, 40, 40], "score": 0.8}])
    report = evaluate_results_file(results, data)
    by_name = {c.name: c for c in report.per_class}
    assert set(by_name) == {"cat", "dog"}  # "unused" has no ground truth, so no AP
    assert (by_name["cat"].ap50_95, by_name["cat"].ap50, by_name["cat"].gt_boxes) == (100.0, 100.0, 1)
    assert (by_name["dog"].ap50_95, by_name["dog"].ap50, by_name["dog"].gt_boxes) == (0.0, 0.0, 2)
    assert by_name["dog"].category_id == 5
    assert report.map50_95 == report.stats["ap50_95"] == 50.0  # COCO's mAP is the mean over classes


def test_stats_are_named_and_empty_ranges_are_none(tmp_path):
    data = write_dataset(tmp_path, [CAT])  # one 80x60 box: "medium" (32^2..96^2), no small or large box
    report = evaluate_results_file(write_results(tmp_path, [{**CAT, "score": 0.9}]), data)
    assert tuple(report.stats) == STAT_KEYS
    assert report.stats["ap50_95_medium"] == report.stats["ar_max1"] == 100.0
    assert report.stats["ap50_95_small"] is None and report.stats["ar_max100_large"] is None
    assert (report.map50_95, report.map50) == (report.stats["ap50_95"], report.stats["ap50"])
    assert report.images_without_detections == 1  # image 2 is in the annotations, not in the results
    assert report.input_pixels_per_image is None  # no model ran


def test_pr_curve_of_a_perfect_result_is_flat_at_one(tmp_path):
    data = write_dataset(tmp_path, [CAT, *DOGS])
    report = evaluate_results_file(write_results(tmp_path, [{**a, "score": 0.9} for a in (CAT, *DOGS)]), data)
    curve = report.pr_curve
    assert len(curve.recall) == len(curve.precision50) == len(curve.precision50_95) == 101
    assert curve.recall[0] == 0.0 and curve.recall[-1] == 1.0
    assert set(curve.precision50) == set(curve.precision50_95) == {1.0}
    assert "pr_curve" not in report.to_dict()


def test_model_report_on_coco_val_dev(detectors):
    det = detectors(MODEL)
    report = evaluate(det, load_dataset(VAL_DIR), limit=30)
    assert report.images == 30 and not report.failed
    # per-class AP and the summary are read from the same precision array: their means agree
    aps = [c.ap50_95 for c in report.per_class]
    assert report.map50_95 == pytest.approx(sum(aps) / len(aps), abs=0.01)
    assert report.map50 == pytest.approx(sum(c.ap50 for c in report.per_class) / len(aps), abs=0.01)
    # the area under the mean precision-recall curve is the mAP too (101-point interpolation)
    assert report.map50 == pytest.approx(100 * sum(report.pr_curve.precision50) / 101, abs=0.05)
    assert report.map50_95 == pytest.approx(100 * sum(report.pr_curve.precision50_95) / 101, abs=0.05)
    # ground-truth counts are those of the 30 images, crowd regions left out
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    ids = {i["id"] for i in meta["images"][:30]}
    gt = [a for a in meta["annotations"] if a["image_id"] in ids and not a["iscrowd"]]
    assert sum(c.gt_boxes for c in report.per_class) == len(gt)
    names = {c["id"]: c["name"] for c in meta["categories"]}
    assert all(names[c.category_id] == c.name for c in report.per_class)
    # one pass per image at the model's fixed input: the cost is its pixel count
    h, w = det.input_size()
    assert report.input_pixels_per_image == h * w


def test_imgsz_reaches_the_detector(detectors):
    det = detectors(MODEL)
    h, w = det.input_size()
    same = evaluate(det, VAL_DIR, limit=3, imgsz=f"{w}x{h}")
    assert same.input_pixels_per_image == h * w
    with pytest.raises(UsageError, match="fixed input size"):
        evaluate(det, VAL_DIR, limit=3, imgsz="auto")
    with pytest.raises(UsageError, match="fixed input"):
        evaluate(det, VAL_DIR, limit=3, imgsz=w * 2)
