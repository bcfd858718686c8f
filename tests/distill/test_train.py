"""Training's guards: the missing extra is one line naming it, only trainable students pass, the schedule."""

from __future__ import annotations

import sys

import pytest

from spotdet.distill.train import TrainSettings, _lr_factor, check_student, require_torch
from spotdet.errors import MissingExtraError, UnsupportedModelError, UsageError
from spotdet.extras import EXTRAS
from spotdet.models.card import get_card


def test_a_missing_extra_names_it_and_the_install_line(monkeypatch):
    """Every module of the extra made unimportable, so the test does not depend on which extras this
    environment has: the message names the first one and the install line."""
    for name in EXTRAS["distill"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` fails, as when not installed
    first = EXTRAS["distill"][0]
    with pytest.raises(MissingExtraError, match=rf"'distill' extra \({first} is not installed\); "
                                                r"pip install 'spotdet\[distill\]'"):
        require_torch()


def test_only_fp32_yolox_students_are_trained():
    check_student(get_card("yolox-nano"))
    with pytest.raises(UnsupportedModelError, match="supported: yolox"):
        check_student(get_card("picodet-s-416"))
    with pytest.raises(UsageError):
        TrainSettings(epochs=0).check()


def test_schedule_warms_up_then_decays_to_five_percent():
    factors = [_lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] == pytest.approx(0.05, abs=0.01)


def test_freeze_choices_are_checked():
    with pytest.raises(UsageError, match="freeze"):
        TrainSettings(freeze="everything").check()


def test_backbone_freeze_stops_at_the_neck():
    """Frozen: every convolution before the first upsampling; the neck and the head (the last layers) train."""
    pytest.importorskip("onnx2torch", reason="the distill extra is not installed")
    from spotdet.distill.train import freeze_backbone, trainable_module
    from spotdet.models.ref import resolve_model

    module = trainable_module(resolve_model("yolox-nano").path)
    frozen = freeze_backbone(module)
    convs = [n for n, m in module.named_modules() if type(m).__name__ == "Conv2d"]
    assert frozen == convs[:len(frozen)] and 0 < len(frozen) < len(convs)
    params = dict(module.named_parameters())
    assert not params[f"{frozen[0]}.weight"].requires_grad and params[f"{convs[-1]}.weight"].requires_grad


def test_samples_keep_the_teachers_scores(tmp_path, photos):
    """Soft targets need each pseudo-box's teacher score; a box a person added (no score) counts as sure."""
    import json

    import cv2

    from spotdet.distill.train import read_samples

    cv2.imwrite(str(tmp_path / "cat.jpg"), photos["chelsea"])
    anns = [{"id": 1, "image_id": 1, "category_id": 17, "bbox": [10, 10, 50, 40], "area": 2000, "iscrowd": 0,
             "score": 0.42},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [70, 10, 30, 60], "area": 1800, "iscrowd": 0}]
    data = {"images": [{"id": 1, "file_name": str(tmp_path / "cat.jpg"), "width": 451, "height": 300}],
            "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}]}
    (tmp_path / "instances.json").write_text(json.dumps(data))
    (sample,) = read_samples(tmp_path, get_card("yolox-nano").names)
    assert sample.scores.tolist() == pytest.approx([0.42, 1.0])
