"""Training's guards: the missing extra is one line naming it, only trainable students pass, the schedule."""

from __future__ import annotations

import sys

import pytest

from spotdet.distill.train import TrainSettings, _lr_factor, check_student, require_torch
from spotdet.errors import MissingExtraError, UnsupportedModelError, UsageError
from spotdet.models.card import get_card


def test_a_missing_extra_names_it_and_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # `import onnx2torch` fails, as when not installed
    with pytest.raises(MissingExtraError, match=r"'distill' extra \(onnx2torch is not installed\); pip install 'spotdet\[distill\]'"):
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
