"""Dynamic batch: the rewrite, its proof on real COCO images, and the refusals when it cannot be proven."""

from __future__ import annotations

import numpy as np
import pytest

from spotdet import Detector
from spotdet.optimize import optimize
from spotdet.optimize.dynamic_batch import BatchCheck, probe_batch, verify_batch
from spotdet.optimize.errors import DynamicBatchError


def test_batch_check_summary():
    ok = BatchCheck(4, 0.0, 1e-4, True).summary()
    assert ok == "batch-4 outputs match each image's batch-1 outputs (max |diff| 0, tolerance 0.0001)"
    assert "DIFFER" in BatchCheck(4, 2.5, 1e-4, False).summary()


@pytest.mark.parametrize("model", ["yolox-nano", "picodet-s-416"])
def test_dynamic_batch_outputs_match_batch1(model, val_images):
    import cv2

    res = optimize(model, dynamic_batch=True, progress=False)
    assert res.card.name == f"{model}-dynbatch" and res.reshapes_rewritten > 0
    assert res.batch_check.passed
    assert res.card.notes.endswith(f"dynamic batch: {res.batch_check.summary()}")
    # an independent check with four real COCO images
    det = Detector(res.path)
    assert det.dynamic_batch
    imgs = [cv2.imread(str(p)) for p in val_images[:4]]
    check = verify_batch(res.path, probe_batch(det.card.preprocess, tuple(det.card.input_size), images=imgs))
    assert check.passed and check.max_abs_diff <= check.tolerance
    # Detector batches the 4 images in one run; results equal the unbatched fp32 parent's
    base = Detector(model)
    batched, single = det(imgs), base(imgs)
    assert len(batched) == len(single) == 4
    for a, b in zip(batched, single):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy, atol=1e-2)


def test_dynamic_batch_is_refused_when_not_provable(tmp_path):
    # FastestDet computes a reshape target from constants; the rewrite cannot see it and the check catches it
    with pytest.raises(DynamicBatchError, match="batch"):
        optimize("fastestdet", dynamic_batch=True, out=tmp_path / "f.onnx", progress=False)
    # dynamic INT8 scales depend on the whole batch: refused with that reason
    with pytest.raises(DynamicBatchError, match="activation scale"):
        optimize("yolov8n-int8", dynamic_batch=True, out=tmp_path / "y.onnx", progress=False)
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []  # nothing half-written left behind
