"""Calibration images for int8-static: sampling, and clear errors for missing, empty or unreadable folders."""

from __future__ import annotations

import pytest

from support.paths import COCO128
from spotdet.optimize import optimize
from spotdet.optimize.calibration import calibration_images
from spotdet.optimize.errors import CalibrationError
from spotdet.vision.sources import list_images


def test_calibration_images_are_spread_over_the_folder():
    every = list_images(COCO128)
    picked = calibration_images(COCO128, 5)
    assert len(picked) == 5 and picked[0] == every[0] and picked[-1] == every[-1]
    assert picked == sorted(picked, key=every.index)
    assert calibration_images(COCO128, 10_000) == every


def test_bad_calibration_folders_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no images"):
        optimize("yolox-nano", "int8-static", calib=empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CalibrationError, match="could be read"):
        optimize("yolox-nano", "int8-static", calib=broken)
    with pytest.raises(CalibrationError, match="no such directory"):
        optimize("yolox-nano", "int8-static", calib=tmp_path / "missing")
