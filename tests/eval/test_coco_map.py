"""Accuracy acceptance: mAP of each zoo model on coco-val-dev within 1.0 point of MODELS.md's reference."""

import json

import pytest

from conftest import VAL_DIR, ZOO_MODELS
from spotdet.errors import UsageError
from spotdet.eval.coco import category_map, evaluate


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
