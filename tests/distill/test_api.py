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
    result = distill("picodet-s-320", "yolox-nano", images, root / "out", epochs=1, batch=2, method="boxes",
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
    assert "pseudo-box labels, backbone frozen" in det.card.notes
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
        distill("picodet-s-320", "yolox-nano", images, root / "out", epochs=1, batch=2, method="boxes")
    again = distill("picodet-s-320", "yolox-nano", images, root / "out", epochs=1, batch=2, method="boxes",
                    resume=True)
    assert again.resumed_from == 1 and not again.labels_made_now  # nothing redone
    assert again.card.sha256 == result.card.sha256


def test_bad_requests_fail_before_any_work(tmp_path):
    with pytest.raises(UnsupportedModelError, match="yolox"):
        distill("yolo11n-int8", "picodet-s-320", tmp_path, tmp_path / "out")
    with pytest.raises(UsageError, match="fixed input"):
        distill("yolo11n-int8", "yolox-nano", tmp_path, tmp_path / "out", imgsz=320)
    with pytest.raises(UsageError, match="conf"):
        distill("yolo11n-int8", "yolox-nano", tmp_path, tmp_path / "out", conf=1.5)
    with pytest.raises(UnsupportedModelError, match="raw head"):  # dense reads ultralytics and yolox heads
        distill("picodet-s-320", "yolox-nano", tmp_path, tmp_path / "out")
    with pytest.raises(UsageError, match="one teacher"):
        distill(["yolo11n-int8", "yolov8n-int8"], "yolox-nano", tmp_path, tmp_path / "out", method="dense")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory, val_images):
    """The default method (dense responses of a fixed-640 Ultralytics teacher, at 832 on a variable-size copy),
    scored on a three-image labelled sample after each epoch."""
    root = tmp_path_factory.mktemp("dense")
    images = root / "images"
    images.mkdir()
    for path in val_images[3:6]:
        (images / path.name).symlink_to(path)
    val = _labelled_sample(val_images[:3], root / "val")
    seen = []
    result = distill("yolo11n-int8", "yolox-nano", images, root / "out", epochs=2, batch=2, lr=1e-3, val=val,
                     on_epoch=lambda stats, module: seen.append(stats.epoch))
    return root, result, seen


def _labelled_sample(paths, folder):
    """A COCO folder of ``paths`` with their official annotations (images referenced by absolute path)."""
    from spotdet.eval.coco import load_dataset

    dataset = load_dataset(paths[0].parent.parent)
    keep = {im["id"]: im for im in dataset.images if dataset.image_dir / im["file_name"] in set(paths)}
    data = {"images": [{**im, "file_name": str(dataset.image_dir / im["file_name"])} for im in keep.values()],
            "annotations": [a for a in dataset.data["annotations"] if a["image_id"] in keep],
            "categories": dataset.categories}
    folder.mkdir()
    (folder / "instances.json").write_text(json.dumps(data))
    return folder


def test_dense_run_stores_teacher_maps_and_exports_the_best_epoch(dense_run):
    root, result, seen = dense_run
    out = root / "out"
    assert seen == [1, 2]
    maps = list((out / "teacher-maps").rglob("*.npy"))
    assert len(maps) == 3 and np.load(maps[0]).shape == (3549, 84)  # one per image, on the student's grid
    assert (out / "teacher" / "yolo11n_int8-dynshape.onnx").is_file()  # the 640 teacher made variable-size
    report = result.val
    assert report.images == 3 and sorted(report.epochs) == [1, 2]
    assert 0 < report.before < 100 and all(0 <= m < 100 for m in report.epochs.values())
    assert "dense responses of the teacher at 2x" in result.card.notes and report.note() in result.card.notes
    # the exported file is the best epoch's: it scores what that epoch scored on the sample
    from spotdet.eval.coco import evaluate

    score = evaluate(Detector(result.model_path), root / "val").map50_95
    assert score == pytest.approx(report.epochs[report.best_epoch], abs=0.01)
    assert json.loads((out / "val.json").read_text())["before"] == report.before


def test_training_device_follows_the_gpu_index(monkeypatch):
    """auto is the CPU here; with a GPU (mocked: this machine has none) cuda:N comes from --gpu / $SPOTDET_GPU."""
    from spotdet.distill.api import _torch_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _torch_device("auto") == "cpu"
    with pytest.raises(UsageError, match="no CUDA GPU"):
        _torch_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("SPOTDET_GPU", "1")
    assert _torch_device("auto") == "cuda:1" and _torch_device("cpu") == "cpu"
    monkeypatch.setenv("SPOTDET_GPU", "3")
    with pytest.raises(UsageError, match="GPU 3 asked for"):
        _torch_device("cuda")
