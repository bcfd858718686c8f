"""Cards of locally made models (written next to the file) and precision variants."""

import dataclasses
import os
import shutil

import pytest

from support.paths import MODEL_DIR
from spotdet import Detector, UsageError
from spotdet.models.card import card_path_for, get_card, read_card_file, write_card_file


@pytest.fixture()
def variant_dir(tmp_path, monkeypatch):
    """A model folder holding a copy of yolox-nano registered as its 'fp16' variant."""
    folder = tmp_path / "made"
    folder.mkdir()
    model = folder / "yolox_nano-fp16.onnx"
    shutil.copy(MODEL_DIR / "yolox_nano.onnx", model)
    parent = get_card("yolox-nano")
    card = dataclasses.replace(parent, name="yolox-nano-fp16", file=str(model), precision="fp16",
                               parent="yolox-nano", url=None, sha256=None)
    write_card_file(card, card_path_for(model))
    monkeypatch.setenv("SPOTDET_MODEL_DIR", os.pathsep.join([str(MODEL_DIR), str(folder)]))
    return folder


def test_card_file_round_trip(variant_dir):
    card = read_card_file(variant_dir / "yolox_nano-fp16.card.toml")
    parent = get_card("yolox-nano")
    assert card.name == "yolox-nano-fp16" and card.parent == "yolox-nano" and card.precision == "fp16"
    assert card.names == parent.names and card.preprocess == parent.preprocess
    assert card.decoder == parent.decoder and card.input_size == parent.input_size
    assert card.file == str(variant_dir / "yolox_nano-fp16.onnx")


def test_variant_is_found_by_name_by_precision_and_by_path(variant_dir, photos):
    by_precision = Detector("yolox-nano", precision="fp16")
    assert by_precision.card.name == "yolox-nano-fp16"
    assert by_precision.model_path == variant_dir / "yolox_nano-fp16.onnx"
    assert Detector("yolox-nano-fp16").card.precision == "fp16"
    by_path = Detector(str(variant_dir / "yolox_nano-fp16.onnx"))
    assert by_path.card.name == "yolox-nano-fp16" and by_path.card.family == "yolox"  # from its card, not guessed
    names = {by_path.names[c] for c in by_path(photos["chelsea"])[0].boxes.cls.tolist()}
    assert "cat" in names


def test_missing_variant_says_how_to_make_it():
    with pytest.raises(UsageError, match="spotdet optimize yolox-nano --precision int8-static"):
        Detector("yolox-nano", precision="int8-static")
