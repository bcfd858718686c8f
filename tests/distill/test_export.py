"""Export: trained weights written back into the student's own graph give the torch module's outputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch", reason="the distill extra (torch, torchvision, onnx2torch) is not installed")

from spotdet.backends.onnxruntime import ort_session  # noqa: E402
from spotdet.distill.export import max_output_difference, with_trained_weights  # noqa: E402
from spotdet.distill.train import freeze_stem, trainable_module  # noqa: E402
from spotdet.errors import UnsupportedModelError  # noqa: E402
from spotdet.models.ref import resolve_model  # noqa: E402
from spotdet.vision.preprocess import preprocess  # noqa: E402


@pytest.fixture(scope="module")
def student():
    return resolve_model("yolox-nano")


def test_every_weight_maps_back_and_the_file_reproduces_the_module(student, tmp_path, photos):
    import onnx

    module = trainable_module(student.path)
    assert freeze_stem(module) is not None and sum(not p.requires_grad for p in module.parameters()) == 2
    with torch.no_grad():  # a "training" that touches every weight
        for p in module.parameters():
            p.mul_(1.01).add_(0.001)
    model = with_trained_weights(student.path, module)
    path = tmp_path / "student.onnx"
    onnx.save_model(model, str(path))
    probe = preprocess(photos["chelsea"], (416, 416), student.card.preprocess)[0]
    assert max_output_difference(path, module, probe) < 1e-4
    original = ort_session(student.path).run(None, {"images": probe})[0]
    assert np.abs(ort_session(path).run(None, {"images": probe})[0] - original).max() > 1e-3  # weights changed
    assert len(model.graph.node) == len(onnx.load(str(student.path)).graph.node)  # the same graph


def test_a_parameter_without_an_onnx_home_is_refused(student):
    module = trainable_module(student.path)
    module.register_parameter("stray", torch.nn.Parameter(torch.zeros(3)))
    with pytest.raises(UnsupportedModelError, match="stray"):
        with_trained_weights(student.path, module)
