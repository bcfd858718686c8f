"""``distill()`` end to end on a tiny run: labels written, weights changed, the export loads in Detector and
gives the trained module's outputs, and a second call resumes instead of starting over."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch", reason="the distill extra (torch, torchvision, onnx2torch) is not installed")

from spotdet import Detector  # noqa: E402
from spotdet.backends.onnxruntime import ort_session  # noqa: E402
from spotdet.distill import distill  # noqa: E402
from spotdet.distill.train import load_trained  # noqa: E402
from spotdet.errors import UnsupportedModelError, UsageError  # noqa: E402
from spotdet.models.ref import resolve_model  # noqa: E402
from spotdet.vision.preprocess import preprocess  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("distill")
    images = root / "images"
    images.mkdir()
    cv2.imwrite(str(images / "cat.jpg"), photos["chelsea"])
    cv2.imwrite(str(images / "person.jpg"), photos["astronaut"])
    epochs = []
    result = distill("picodet-s-320", "yolox-nano", images, root / "out", epochs=1, batch=2,
                     on_epoch=lambda stats, module: epochs.append(stats))
    return root, images, result, epochs


def test_labels_are_written_as_a_coco_file(run):
    _, _, result, _ = run
    data = json.loads((result.labels_dir / "instances.json").read_text())
    assert len(data["images"]) == 2
    assert result.labels == sum(1 for a in data["annotations"] if not a["iscrowd"]) > 0  # boxes it trained on
    # defaults: every box the teacher scored 0.1 or more is a label, and none is an ignore region
    assert all(a["score"] >= 0.1 and not a["iscrowd"] for a in data["annotations"])
    assert data["info"]["spotdet_distill"]["teachers"] == ["picodet-s-320"]


def test_the_export_loads_in_detector_and_matches_the_trained_module(run, photos):
    root, _, result, epochs = run
    assert [e.epoch for e in epochs] == [1] and np.isfinite(epochs[0].loss)
    det = Detector(result.model_path)
    assert det.name == result.card.name and det.card.family == "yolox" and det.card.parent is None
    assert "teacher(s) picodet-s-320" in det.card.notes and "distilled from yolox-nano" in det.card.notes
    assert ", backbone frozen" in det.card.notes
    tensor = preprocess(photos["chelsea"], (416, 416), det.card.preprocess)[0]
    module = load_trained(resolve_model("yolox-nano").path, root / "out")
    with torch.no_grad():
        trained = module(torch.from_numpy(tensor)).numpy()
    exported = det.backend.run(tensor)[0]
    assert np.abs(exported - trained).max() < 1e-3
    original = ort_session(resolve_model("yolox-nano").path).run(None, {"images": tensor})[0]
    assert np.abs(exported - original).max() > 1e-4  # the student's weights changed
    assert det(photos["chelsea"])[0].to_dict()["model"] == result.card.name


def test_a_second_call_needs_resume_and_then_continues_from_the_checkpoint(run):
    root, images, result, _ = run
    with pytest.raises(UsageError, match="--resume"):
        distill("picodet-s-320", "yolox-nano", images, root / "out", epochs=1, batch=2)
    again = distill("picodet-s-320", "yolox-nano", images, root / "out", epochs=1, batch=2, resume=True)
    assert again.resumed_from == 1 and not again.labels_made_now  # nothing redone
    assert again.card.sha256 == result.card.sha256


def test_bad_requests_fail_before_any_work(tmp_path):
    with pytest.raises(UnsupportedModelError, match="yolox"):
        distill("yolo11n-int8", "picodet-s-320", tmp_path, tmp_path / "out")
    with pytest.raises(UsageError, match="fixed input"):
        distill("yolo11n-int8", "yolox-nano", tmp_path, tmp_path / "out", imgsz=320)
    with pytest.raises(UsageError, match="conf"):
        distill("yolo11n-int8", "yolox-nano", tmp_path, tmp_path / "out", conf=1.5)
    assert not (tmp_path / "out").exists()
