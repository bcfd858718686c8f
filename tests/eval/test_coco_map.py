"""Accuracy acceptance: mAP of each zoo model on coco-val-dev within 1.0 point of MODELS.md's reference."""

import json

import pytest

from support.paths import VAL_DIR, ZOO_MODELS
from spotdet.errors import UsageError
from spotdet.eval.coco import category_map, evaluate, evaluate_results_file


@pytest.mark.parametrize("model", ZOO_MODELS)
def test_map_matches_reference(model, detectors):
    det = detectors(model)
    report = evaluate(det, VAL_DIR)
    assert report.images == 103 and not report.failed
    assert abs(report.map50_95 - det.card.reference_dev_map) <= 1.0, (model, report.map50_95)
    assert report.map50 > report.map50_95


def test_categories_are_matched_by_name():
    categories = json.loads((VAL_DIR / "instances.json").read_text())["categories"]
    mapping = category_map({0: "person", 1: "bicycle", 79: "toothbrush", 80: "not-coco"}, categories)
    assert mapping == {0: 1, 1: 2, 79: 90}


def test_missing_annotations_is_a_usage_error(detectors, tmp_path):
    with pytest.raises(UsageError, match="instances.json"):
        evaluate(detectors("fastestdet"), tmp_path)


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON file"),
    ('{"a": 1}', "not a COCO results list"),
    ('[{"image_id": 139, "bbox": [0, 0, 1, 1], "score": 0.5}]', "not a COCO results list"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]', "not in instances.json"),
])
def test_bad_results_files_are_usage_errors(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        evaluate_results_file(path, VAL_DIR)


def test_results_file_of_perfect_detections_scores_100(tmp_path):
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in meta["annotations"] if not a.get("iscrowd")]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(perfect))
    report = evaluate_results_file(path, VAL_DIR)
    assert report.images == 103 and report.map50 == 100.0 and report.map50_95 > 99.0
