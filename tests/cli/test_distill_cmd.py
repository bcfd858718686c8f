"""``spotdet distill`` through the console script: bad requests are one line and a documented exit code.

The pipeline itself runs end to end in tests/distill/test_api.py; these cases fail before any model runs.
"""

from __future__ import annotations

import pytest

from support.batch import cli_env, one_line_error, run_spotdet


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


def test_a_fixed_size_student_refuses_another_imgsz_with_exit_2(env, tmp_path):
    proc = run_spotdet(env, "distill", "--teacher", "yolo11n-int8", "--student", "yolox-nano", "--images",
                       tmp_path, "--out", tmp_path / "out", "--imgsz", "320")
    assert proc.returncode == 2
    assert "fixed input of 416x416" in one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_an_untrainable_student_family_is_named_with_exit_1(env, tmp_path):
    proc = run_spotdet(env, "distill", "-t", "yolo11n-int8", "-s", "fastestdet", "--images", tmp_path,
                       "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert "supported: yolox" in one_line_error(proc)


def test_an_unknown_teacher_is_a_usage_error(env, tmp_path):
    proc = run_spotdet(env, "distill", "-t", "no-such-model", "-s", "yolox-nano", "--images", tmp_path,
                       "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "unknown model 'no-such-model'" in one_line_error(proc)


def test_dense_takes_one_teacher_and_a_method_must_exist(env, tmp_path):
    proc = run_spotdet(env, "distill", "-t", "yolo11n-int8", "-t", "yolov8n-int8", "-s", "yolox-nano",
                       "--images", tmp_path, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "learns one teacher's responses" in one_line_error(proc)
    proc = run_spotdet(env, "distill", "-t", "yolo11n-int8", "-s", "yolox-nano", "--images", tmp_path,
                       "--out", tmp_path / "out", "--method", "telepathy")
    assert proc.returncode == 2
    assert "method must be one of dense, boxes" in one_line_error(proc)


def test_a_val_folder_without_annotations_is_refused_before_training(env, tmp_path):
    (tmp_path / "img").mkdir()
    proc = run_spotdet(env, "distill", "-t", "yolo11n-int8", "-s", "yolox-nano", "--images", tmp_path / "img",
                       "--out", tmp_path / "out", "--val", tmp_path / "img")
    assert proc.returncode == 2
    assert "instances.json" in one_line_error(proc)


def test_the_clis_defaults_are_the_librarys():
    """The CLI repeats a few defaults so that --help does not import numpy; they must not drift apart."""
    from spotdet.cli import distill_cmd
    from spotdet.distill import api

    assert distill_cmd.DISTILL_CONF == api.DEFAULT_CONF and distill_cmd.DISTILL_EPOCHS == api.DEFAULT_EPOCHS
    assert distill_cmd.DISTILL_METHOD == api.DEFAULT_METHOD
    assert distill_cmd.DISTILL_IGNORE_CONF == (api.DEFAULT_IGNORE_CONF or 0.0)
