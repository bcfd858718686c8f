"""`spotdet detect` with the pixel limit (on by default, like the service's) and with places it cannot write to.

Images over the limit are refused from their header, before decoding: a PNG whose header claims 8000x8000
(64 MP, over the 40 MP default) is 67 bytes here. Errors from the operating system are one line and exit 74.
"""

from __future__ import annotations

import json
import os

import cv2
import pytest

from spotdet.vision.image_io import DEFAULT_MAX_PIXELS
from support.batch import env, one_line_error, png_claiming, run_spotdet, unwritable_dir  # noqa: F401 (fixtures)

MODEL = "fastestdet"
EXIT_IO = 74


@pytest.fixture
def cat_jpg(photos, tmp_path):
    path = tmp_path / "cat.jpg"
    assert cv2.imwrite(str(path), photos["chelsea"])  # 451x300
    return path


def test_default_pixel_limit_refuses_a_huge_image_before_decoding(env, tmp_path, cat_jpg):
    huge = png_claiming(tmp_path / "huge.png", 8000, 8000)
    proc = run_spotdet(env, "detect", cat_jpg, huge, "--model", MODEL, "--json")
    assert proc.returncode == 1, proc.stderr
    assert f"{huge}: 8000x8000 = 64000000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS}" in proc.stderr
    assert "1 of 2 image(s) could not be read" in proc.stderr and "Traceback" not in proc.stderr
    assert [item["path"] for item in json.loads(proc.stdout)] == [str(cat_jpg)]  # the other image still runs


def test_max_pixels_option(env, cat_jpg):
    proc = run_spotdet(env, "detect", cat_jpg, "--model", MODEL, "--max-pixels", "100000")
    assert proc.returncode == 1
    assert "451x300 = 135300 pixels exceeds the limit of 100000 (--max-pixels)" in proc.stderr
    assert run_spotdet(env, "detect", cat_jpg, "--model", MODEL, "--max-pixels", "135300").returncode == 0
    assert run_spotdet(env, "detect", cat_jpg, "--model", MODEL, "--max-pixels", "0").returncode == 0  # no limit


def test_save_through_a_file_fails_before_running(env, tmp_path, cat_jpg):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    for target in (blocker, blocker / "annotated"):
        proc = run_spotdet(env, "detect", cat_jpg, "--model", MODEL, "--save", target)
        assert proc.returncode == EXIT_IO, proc.stderr
        assert str(target) in one_line_error(proc)
        assert proc.stdout == ""  # refused before any image was run


def test_save_into_an_unwritable_folder(env, cat_jpg, unwritable_dir):
    for target in (unwritable_dir, unwritable_dir / "annotated"):
        proc = run_spotdet(env, "detect", cat_jpg, "--model", MODEL, "--save", target)
        assert proc.returncode == EXIT_IO, proc.stderr
        assert str(target) in one_line_error(proc) and proc.stdout == ""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_one_error_line_not_a_hang(env, tmp_path, cat_jpg):
    """A FIFO named like an image, given directly or found in a folder, fails as one image; the others run.
    (Reading it would wait for a writer forever: run_spotdet's timeout fails the test instead.)"""
    os.mkfifo(tmp_path / "b.jpg")
    proc = run_spotdet(env, "detect", tmp_path / "b.jpg", "--model", MODEL, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"error: {tmp_path / 'b.jpg'}: not a file (a FIFO)",
                                        "error: 1 of 1 image(s) could not be read"]

    folder = tmp_path / "photos"
    folder.mkdir()
    os.mkfifo(folder / "x.jpg")
    cat_jpg.rename(folder / "cat.jpg")
    proc = run_spotdet(env, "detect", folder, "--model", MODEL, "--json", timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert [item["path"] for item in json.loads(proc.stdout)] == [str(folder / "cat.jpg")]
    assert proc.stderr.splitlines() == [f"error: {folder / 'x.jpg'}: not a file (a FIFO)",
                                        "error: 1 of 2 image(s) could not be read"]


def test_a_malformed_url_is_one_error_line(env):
    proc = run_spotdet(env, "detect", "http://[::1", "--model", MODEL)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == ["error: http://[::1: not a valid URL (Invalid IPv6 URL)",
                                        "error: 1 of 1 image(s) could not be read"]
