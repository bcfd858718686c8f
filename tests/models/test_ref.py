"""Model resolution: zoo names, variant precisions and .onnx paths -> ModelRef; bad names fail with the reason."""

from __future__ import annotations

import re

import pytest

from spotdet import Detector, ModelNotFoundError, UnsupportedModelError, UsageError
from spotdet.models.ref import ModelRef, resolve_card, resolve_model
from support.paths import MODEL_DIR

MODEL = "yolox-nano"


def test_zoo_name_resolves_to_card_and_local_file():
    ref = resolve_model(MODEL)
    assert isinstance(ref, ModelRef)
    assert ref.card.name == MODEL and ref.path.resolve() == (MODEL_DIR / ref.card.file).resolve()


def test_onnx_path_keeps_the_file_it_names():
    card, path = resolve_card(MODEL_DIR / "yolox_nano.onnx", family="yolox")
    assert path == MODEL_DIR / "yolox_nano.onnx" and card.family == "yolox"


def test_detector_accepts_a_resolved_ref():
    ref = resolve_model(MODEL)
    assert Detector(ref).model_path == ref.path


def test_unknown_model_suggests_close_match():
    with pytest.raises(ModelNotFoundError) as excinfo:
        Detector("yolox-nan")
    message = str(excinfo.value)
    assert isinstance(excinfo.value, UsageError)
    assert "'yolox-nan'" in message
    # The message lists every known model anyway; the suggestion itself must name yolox-nano.
    match = re.search(r"Did you mean ([^?]+)\?", message)
    assert match, message
    assert "yolox-nano" in [s.strip() for s in match.group(1).split(",")]


def test_unknown_model_without_close_match_has_no_suggestion():
    with pytest.raises(ModelNotFoundError) as excinfo:
        Detector("qqqqqqqq")
    message = str(excinfo.value)
    assert "Did you mean" not in message
    assert "Known models" in message and ".onnx" in message


def test_missing_onnx_path(tmp_path):
    path = tmp_path / "missing" / "model.onnx"
    with pytest.raises(UsageError) as excinfo:
        Detector(str(path))
    assert not isinstance(excinfo.value, ModelNotFoundError)
    assert "no such model file" in str(excinfo.value)
    assert "model.onnx" in str(excinfo.value)


def test_non_onnx_file_named_onnx(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_text("definitely not a protobuf\n" * 10)
    with pytest.raises(UnsupportedModelError) as excinfo:
        Detector(str(path))
    assert "x.onnx" in str(excinfo.value)
    assert "not a readable ONNX model" in str(excinfo.value)


def test_precision_not_available():
    with pytest.raises(UsageError) as excinfo:
        Detector(MODEL, precision="fp16")
    message = str(excinfo.value)
    assert "fp16" in message and "fp32" in message
    assert Detector(MODEL, precision="fp32").card.precision == "fp32"


