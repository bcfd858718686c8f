"""The real ``spotdet`` command line, run as a subprocess against the real models and COCO images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import spotdet
from support.paths import MODEL_DIR, VAL_DIR, ZOO_MODELS
from spotdet.models.card import get_card

MODEL = "yolox-nano"
TIMEOUT = 120


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    env["SPOTDET_MODEL_DIR"] = str(MODEL_DIR)
    env["SPOTDET_CACHE_DIR"] = str(tmp_path / "cli-cache")
    env["NO_COLOR"] = "1"
    return env


def _console_script() -> str:
    """The ``spotdet`` script pip installed for this interpreter (falling back to the one on PATH)."""
    beside = Path(sys.executable).with_name("spotdet")
    found = str(beside) if beside.is_file() else shutil.which("spotdet")
    assert found, "the spotdet console script is not installed"
    return found


@pytest.fixture
def run(cli_env):
    """Run ``spotdet ARGS`` (the installed console script) and return the CompletedProcess (text mode)."""
    exe = _console_script()

    def _run(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *map(str, args)], env=env or cli_env, capture_output=True, text=True,
                              timeout=TIMEOUT)
    return _run


@pytest.fixture
def cat_jpg(photos, tmp_path) -> Path:
    path = tmp_path / "cat.jpg"
    assert cv2.imwrite(str(path), photos["chelsea"])
    return path


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """stderr must be a single 'error: ...' line, with no traceback."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _unwrapped(text: str) -> str:
    """Console text with line breaks and padding removed: Rich wraps a table's title to the table's width,
    which can split a long path or name across lines."""
    return "".join(line.strip() for line in text.splitlines())


# --------------------------------------------------------------------------------------------------
# detect
# --------------------------------------------------------------------------------------------------

def test_detect_json(run, cat_jpg):
    proc = run("detect", cat_jpg, "--model", MODEL, "--json")
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)
    assert isinstance(items, list) and len(items) == 1
    item = items[0]
    assert item["path"] == str(cat_jpg)
    assert item["model"] == MODEL
    assert (item["width"], item["height"]) == (451, 300)
    assert "cat" in [d["class_name"] for d in item["detections"]]
    for d in item["detections"]:
        assert 0.25 <= d["confidence"] <= 1.0
        box = d["box"]
        assert 0 <= box["x1"] <= box["x2"] <= 451 and 0 <= box["y1"] <= box["y2"] <= 300
    timings = item["timings"]
    for stage in ("decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "total_ms"):
        assert stage in timings and timings[stage] >= 0
    assert timings["infer_ms"] > 0
    assert item["saved"] is None


def test_console_script_on_path(cli_env, cat_jpg):
    exe = shutil.which("spotdet")
    assert exe is not None, "the spotdet console script is not on PATH"
    proc = subprocess.run([exe, "detect", str(cat_jpg), "-m", MODEL, "--json"], env=cli_env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    (item,) = json.loads(proc.stdout)
    assert "cat" in [d["class_name"] for d in item["detections"]]


def test_module_entry_point_runs_subcommands(cli_env, cat_jpg):
    """``python -m spotdet.cli.main`` (main.py ends in ``if __name__ == "__main__": main()``) must offer the
    same commands as the console script."""
    base = [sys.executable, "-m", "spotdet.cli.main"]
    proc = subprocess.run([*base, "models", "list", "--json"], env=cli_env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)] == ZOO_MODELS
    proc = subprocess.run([*base, "detect", str(cat_jpg), "-m", MODEL, "--json"], env=cli_env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    (item,) = json.loads(proc.stdout)
    assert "cat" in [d["class_name"] for d in item["detections"]]


def test_detect_save_writes_annotated_jpeg(run, cat_jpg, tmp_path):
    out_dir = tmp_path / "annotated"
    proc = run("detect", cat_jpg, "--model", MODEL, "--save", out_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    (item,) = json.loads(proc.stdout)
    saved = out_dir / "cat.jpg"
    assert item["saved"] == str(saved)
    assert saved.is_file()
    assert saved.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    annotated = cv2.imread(str(saved))
    original = cv2.imread(str(cat_jpg))
    assert annotated is not None and annotated.shape == original.shape
    # Boxes and labels were drawn: a visible share of pixels changed far beyond JPEG re-encoding noise.
    diff = np.abs(annotated.astype(int) - original.astype(int)).max(axis=2)
    assert (diff > 60).mean() > 0.002


def test_detect_table_output(run, cat_jpg):
    proc = run("detect", cat_jpg, "--model", MODEL)
    assert proc.returncode == 0, proc.stderr
    assert "│ cat " in proc.stdout  # a table row for the cat
    text = _unwrapped(proc.stdout)
    assert str(cat_jpg) in text and "451x300" in text
    assert MODEL in text, f"model name missing from the table output:\n{proc.stdout}"


def test_detect_table_output_with_save(run, cat_jpg, tmp_path):
    out_dir = tmp_path / "saved"
    proc = run("detect", cat_jpg, "--model", MODEL, "--save", out_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"saved {out_dir / 'cat.jpg'}" in proc.stdout
    assert (out_dir / "cat.jpg").is_file()


def test_detect_unknown_model(run, cat_jpg):
    proc = run("detect", cat_jpg, "--model", "yolox-nan")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "yolox-nan" in line
    assert "Did you mean yolox-nano" in line
    assert proc.stdout == ""


def test_detect_missing_image(run, tmp_path):
    missing = tmp_path / "no-such-photo.jpg"
    proc = run("detect", missing, "--model", MODEL)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{missing}: no such file" in proc.stderr


def test_detect_missing_image_with_brackets_in_name(run, tmp_path):
    """File names are printed verbatim, not parsed as console markup."""
    missing = tmp_path / "shot[final].jpg"
    proc = run("detect", missing, "--model", MODEL)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{missing}: no such file" in proc.stderr, proc.stderr


def test_detect_good_and_corrupt_image(run, cat_jpg, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(cat_jpg.read_bytes()[:2000])  # truncated JPEG
    proc = run("detect", cat_jpg, corrupt, "--model", MODEL, "--json")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "corrupt.jpg" in proc.stderr
    assert "1 of 2 image(s) could not be read" in proc.stderr
    items = json.loads(proc.stdout)  # the good image's result is still printed
    assert [i["path"] for i in items] == [str(cat_jpg)]
    assert "cat" in [d["class_name"] for d in items[0]["detections"]]


def test_detect_file_name_too_long(run, cat_jpg, tmp_path):
    """A name the OS refuses (ENAMETOOLONG) is one more unreadable image, not a crash."""
    too_long = tmp_path / ("b" * 300 + ".jpg")
    proc = run("detect", cat_jpg, too_long, "--model", MODEL, "--json")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 1
    assert "bbbb" in proc.stderr
    assert "1 of 2 image(s) could not be read" in proc.stderr
    items = json.loads(proc.stdout)
    assert [i["path"] for i in items] == [str(cat_jpg)]


def test_detect_good_and_corrupt_image_table(run, cat_jpg, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_text("not an image")
    proc = run("detect", corrupt, cat_jpg, "--model", MODEL)
    assert proc.returncode == 1
    assert "corrupt.jpg" in proc.stderr and "Traceback" not in proc.stderr
    assert "│ cat " in proc.stdout and str(cat_jpg) in _unwrapped(proc.stdout)


@pytest.mark.parametrize("args", [["--conf", "5"], ["--conf", "-1"], ["--iou", "2"], ["--max-det", "0"],
                                  ["--imgsz", "8"]], ids=lambda a: " ".join(a))
def test_detect_bad_option_value(run, cat_jpg, args):
    proc = run("detect", cat_jpg, "--model", MODEL, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert args[0] in proc.stderr or args[0].lstrip("-").replace("-", "_") in proc.stderr  # the option is named
    assert proc.stdout == ""


def test_detect_fixed_input_imgsz(run, cat_jpg):
    proc = run("detect", cat_jpg, "--model", MODEL, "--imgsz", "640")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "416" in line and "640" in line


def test_detect_invalid_device(run, cat_jpg):
    proc = run("detect", cat_jpg, "--model", MODEL, "--device", "gpu0")
    assert proc.returncode == 2
    assert "gpu0" in _one_line_error(proc)


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------

def test_models_list_table(run):
    proc = run("models", "list")
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] in ZOO_MODELS:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(ZOO_MODELS), proc.stdout
    for name, cells in rows.items():
        assert cells[-1] == "yes", f"{name} not shown as local: {cells}"
        assert cells[5].endswith("MB"), f"{name} has no file size: {cells}"


def test_models_list_json(run):
    proc = run("models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == ZOO_MODELS
    for row in rows:
        assert row["local_path"], row["name"]
        local = Path(row["local_path"])
        assert local.parent == MODEL_DIR and local.name == row["file"] and local.is_file()


def test_models_list_without_local_files(run, cli_env, tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    env = {**cli_env, "SPOTDET_MODEL_DIR": str(empty), "SPOTDET_CACHE_DIR": str(tmp_path / "empty-cache")}
    proc = run("models", "list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == len(ZOO_MODELS)
    assert all(r["local_path"] is None for r in rows), rows

    proc = run("models", "list", env=env)
    assert proc.returncode == 0, proc.stderr
    local_cells = [line.strip().strip("│").split("│")[-1].strip()
                   for line in proc.stdout.splitlines() if any(f" {m} " in line for m in ZOO_MODELS)]
    assert local_cells == ["no"] * len(ZOO_MODELS), proc.stdout


def test_models_info(run):
    proc = run("models", "info", MODEL)
    assert proc.returncode == 0, proc.stderr
    card = get_card(MODEL)
    assert card.sha256 and card.sha256 in proc.stdout
    fields = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 2:
            fields[cells[0]] = cells[1]
    assert fields["family"] == "yolox"
    assert fields["sha256"] == card.sha256
    assert fields["local_path"] == str(MODEL_DIR / "yolox_nano.onnx")


def test_models_info_unknown(run):
    proc = run("models", "info", "nope")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "'nope'" in line
    assert proc.stdout == ""


# --------------------------------------------------------------------------------------------------
# eval and --version
# --------------------------------------------------------------------------------------------------

def test_eval_json(run):
    proc = run("eval", "--model", MODEL, "--data", VAL_DIR, "--limit", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == MODEL
    assert report["images"] == 10
    assert 10 < report["map50_95"] <= 100
    assert report["map50_95"] <= report["map50"] <= 100
    assert report["images_per_s"] > 0
    assert report["failed"] == []
    assert len(report["stats"]) == 12


def test_eval_folder_without_annotations(run, tmp_path):
    folder = tmp_path / "no-annotations"
    (folder / "images").mkdir(parents=True)
    proc = run("eval", "--model", MODEL, "--data", folder)
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "instances.json" in line and "no-annotations" in line


def test_version(run):
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"spotdet {spotdet.__version__}"


def test_version_via_module():
    proc = subprocess.run([sys.executable, "-m", "spotdet.cli.main", "--version"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"spotdet {spotdet.__version__}"
