"""Annotation files are checked, and their optional fields filled, before any model runs.

Real coco-val-dev annotations, edited the way other tools write them: without ``iscrowd`` and ``area`` (which
pycocotools needs and COCO tools fill in), or with boxes pycocotools cannot score.
"""

from __future__ import annotations

import json

import pytest

from spotdet.errors import UsageError
from spotdet.eval.coco import evaluate, evaluate_results_file, read_dataset
from support.batch import cli_env, one_line_error, run_spotdet
from support.paths import VAL_DIR

MODEL = "fastestdet"


def dataset(tmp_path, edit, images: bool = True):
    """A copy of coco-val-dev's annotations changed by ``edit(meta)``, with its images (or none)."""
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    edit(meta)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "instances.json").write_text(json.dumps(meta))
    if images:
        (folder / "images").symlink_to(VAL_DIR / "images")
    return folder


def strip_optional_fields(meta):
    """No ``area`` anywhere, no ``iscrowd`` where it is 0 (the value COCO tools assume)."""
    for ann in meta["annotations"]:
        del ann["area"]
        if ann["iscrowd"] == 0:
            del ann["iscrowd"]


def test_eval_fills_missing_iscrowd_and_area(tmp_path, detectors):
    data = dataset(tmp_path, strip_optional_fields)
    proc = run_spotdet(cli_env(tmp_path / "cache"), "eval", "--model", MODEL, "--data", data, "--limit", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    original = evaluate(detectors(MODEL), VAL_DIR, limit=12)
    # mAP over all areas does not depend on which area a box has; iscrowd 0 is what was stripped
    assert (report["map50_95"], report["map50"]) == (original.map50_95, original.map50)
    assert report["images"] == 12 and report["map50_95"] > 0


def test_results_file_scores_against_annotations_without_optional_fields(tmp_path):
    data = dataset(tmp_path, strip_optional_fields, images=False)
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in meta["annotations"] if not a["iscrowd"]]
    results = tmp_path / "perfect.json"
    results.write_text(json.dumps(perfect))
    report = evaluate_results_file(results, data)
    assert report.images == 103 and report.map50 == 100.0


@pytest.mark.parametrize("bbox", [[10, 20, 30], [10, 20, -5, 40]], ids=["three-numbers", "negative-width"])
def test_malformed_box_is_refused_before_the_model_runs(tmp_path, bbox):
    """No images beside the annotations: a model run would fail on them ("no image could be read", exit 1);
    the check comes first and names the entry (exit 2)."""
    def edit(meta):
        meta["annotations"][5]["bbox"] = bbox

    data = dataset(tmp_path, edit, images=False)
    proc = run_spotdet(cli_env(tmp_path / "cache"), "eval", "--model", MODEL, "--data", data)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    ann_id = json.loads((VAL_DIR / "instances.json").read_text())["annotations"][5]["id"]
    assert f"annotation #5 (id {ann_id}): bbox must be [x, y, width, height]" in line and str(bbox) in line


def write(tmp_path, annotations, images=({"id": 1, "file_name": "a.jpg"},), categories=({"id": 1, "name": "cat"},)):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": list(images), "categories": list(categories), "annotations": annotations}))
    return path


def test_read_dataset_fills_what_coco_tools_fill(tmp_path):
    path = write(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 5], "id": 7},
                            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 3.5]},
                            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 1, "area": 0.5}])
    anns = read_dataset(path)["annotations"]
    assert [(a["id"], a["iscrowd"], a["area"]) for a in anns] == [(7, 0, 20.0), (8, 0, 7.0), (9, 1, 0.5)]


@pytest.mark.parametrize("ann, message", [
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, float("nan"), 1]}, "bbox must be"),
    ({"image_id": 1, "category_id": 1, "bbox": ["0", 0, 1, 1]}, "bbox must be"),
    ({"image_id": 1, "category_id": 1}, "bbox must be"),
    ({"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}, "image_id 2 is not among the images"),
    ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}, "category_id 3 is not among the categories"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 2}, "iscrowd must be 0 or 1"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": -1}, "area must be a number >= 0"),
    ("not an object", "not an object"),
])
def test_read_dataset_refuses_what_cannot_be_scored(tmp_path, ann, message):
    with pytest.raises(UsageError, match="1 annotation\\(s\\) cannot be scored") as info:
        read_dataset(write(tmp_path, [ann]))
    assert message in str(info.value)


def test_duplicate_ids_and_many_problems_are_summed_up(tmp_path):
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}
    anns = [{**good, "id": 1}, {**good, "id": 1}] + [{**good, "bbox": []}] * 7
    with pytest.raises(UsageError) as info:
        read_dataset(write(tmp_path, anns))
    message = str(info.value)
    assert "8 annotation(s) cannot be scored" in message and "id 1 is not a unique integer" in message
    assert "(and 3 more)" in message
