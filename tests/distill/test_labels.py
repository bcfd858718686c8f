"""Pseudo-labels: a real teacher job, the COCO file it becomes, and weighted box fusion of two teachers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from spotdet.distill.labels import ImageLabels, LabelSettings, fuse, make_labels, stored_settings, to_coco
from spotdet.distill.train import read_samples
from spotdet.models.labels import COCO80


def _labels(path: str, boxes: list[list[float]], scores: list[float], names: list[str]) -> ImageLabels:
    return ImageLabels(path, 640, 480, np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                       names)


def test_to_coco_references_images_by_path_and_reads_back_as_student_classes(tmp_path):
    settings = LabelSettings(("t",), "src", 0.3, 0.6)
    image = _labels("/data/a.jpg", [[10, 20, 110, 220], [5, 5, 4, 9]], [0.9, 0.8], ["cat", "dog"])
    coco = to_coco([image], COCO80, settings)
    assert coco["images"] == [{"id": 1, "file_name": "/data/a.jpg", "width": 640, "height": 480}]
    (ann,) = coco["annotations"]  # the box with x2 < x1 is dropped
    assert ann["bbox"] == [10, 20, 100, 200] and ann["category_id"] == 17 and ann["score"] == 0.9  # cat: id 17
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    (sample,) = read_samples(tmp_path, COCO80)
    assert sample.path == "/data/a.jpg"
    assert sample.boxes.tolist() == [[10, 20, 110, 220]] and sample.classes.tolist() == [COCO80.index("cat")]


def test_unsure_teacher_boxes_become_ignore_regions(tmp_path):
    settings = LabelSettings(("t",), "src", 0.3, 0.6, ignore_conf=0.1)
    assert settings.lowest == 0.1
    image = _labels("/data/a.jpg", [[10, 20, 110, 220], [200, 200, 260, 280]], [0.9, 0.2], ["cat", "dog"])
    coco = to_coco([image], COCO80, settings)
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1]
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    (sample,) = read_samples(tmp_path, COCO80)
    assert sample.classes.tolist() == [COCO80.index("cat")] and sample.ignore.tolist() == [[200, 200, 260, 280]]


def test_fusion_keeps_boxes_both_teachers_agree_on_and_halves_the_rest():
    pytest.importorskip("ensemble_boxes")
    a = [_labels("x.jpg", [[100, 100, 200, 200], [300, 300, 400, 400]], [0.8, 0.9], ["cat", "dog"])]
    b = [_labels("x.jpg", [[104, 98, 204, 198]], [0.6], ["cat"])]
    (fused,) = fuse([a, b], conf=0.5)
    assert fused.names == ["cat"]  # the dog only one teacher saw scores 0.45 after averaging: below conf
    assert fused.scores[0] == pytest.approx(0.7, abs=1e-3)
    assert np.allclose(fused.xyxy[0], [100 + 4 * 0.6 / 1.4, 99.4, 201.7, 199.4], atol=1.0)


def test_teacher_job_writes_labels_and_keeps_them_when_settings_match(tmp_path, photos):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "cat.jpg"), photos["chelsea"])
    cv2.imwrite(str(images / "person.jpg"), photos["astronaut"])
    settings = LabelSettings(("yolox-nano",), str(images), 0.3, 0.6)
    labels_dir, made = make_labels(settings, COCO80, tmp_path / "out")
    assert made and stored_settings(labels_dir) == settings.to_dict()
    samples = {s.path.rsplit("/", 1)[-1]: s for s in read_samples(labels_dir, COCO80)}
    assert COCO80.index("cat") in samples["cat.jpg"].classes
    assert COCO80.index("person") in samples["person.jpg"].classes
    # a corrected file with the same settings is kept; other settings relabel
    data = json.loads((labels_dir / "instances.json").read_text())
    data["annotations"] = data["annotations"][:1]
    (labels_dir / "instances.json").write_text(json.dumps(data))
    assert make_labels(settings, COCO80, tmp_path / "out") == (labels_dir, False)
    assert len(json.loads((labels_dir / "instances.json").read_text())["annotations"]) == 1
