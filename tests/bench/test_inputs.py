"""Timing inputs (given images, a COCO folder, the synthetic card) and --imgsz / --batch lists."""

from __future__ import annotations

import shutil

import pytest

from support.paths import VAL_DIR
from spotdet.bench.inputs import TIMING_IMAGES, parse_sizes, synthetic_image, timing_images
from spotdet.errors import UsageError


def test_synthetic_card_without_inputs():
    imgs, label = timing_images()
    assert len(imgs) == 2 and "synthetic" in label
    assert imgs[0].shape == (480, 640, 3) and (imgs[0] == synthetic_image(0)).all()
    assert not (imgs[0] == imgs[1]).all()


def test_coco_folder_images():
    imgs, label = timing_images(data=VAL_DIR)
    assert len(imgs) == TIMING_IMAGES and imgs[0].ndim == 3
    assert label.startswith(f"{TIMING_IMAGES} images from") and "x" in label


def test_given_folders_are_walked_with_the_shared_image_list(tmp_path):
    src = sorted((VAL_DIR / "images").glob("*.jpg"))[:3]
    (tmp_path / "sub").mkdir()
    shutil.copy(src[0], tmp_path / "a.jpg")
    shutil.copy(src[1], tmp_path / "sub" / "b.JPEG")  # nested, upper-case suffix: vision.sources finds both
    (tmp_path / "notes.txt").write_text("not an image")
    imgs, label = timing_images(images=[tmp_path, src[2]])
    assert len(imgs) == 3 and label.startswith("3 given images")


def test_no_images_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no images found"):
        timing_images(images=[tmp_path])  # an empty folder


def test_size_lists():
    assert parse_sizes("640, 320,320", "imgsz") == [320, 640]
    assert parse_sizes(None, "batch") is None and parse_sizes(" ", "batch") is None


@pytest.mark.parametrize("text", ["a,b", "0", "-1,2", ","])
def test_bad_size_lists(text):
    with pytest.raises(UsageError):
        parse_sizes(text, "imgsz")
