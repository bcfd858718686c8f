"""``spotdet eval`` through the installed console script: named figures, per-class AP, input pixels, the
results-file warning, the PR chart, and batch's COCO output scoring like eval."""

from __future__ import annotations

import json

import pytest

from spotdet.eval.coco import STAT_KEYS, evaluate
from support.batch import cli_env, one_line_error, run_spotdet
from support.paths import VAL_DIR

MODEL = "fastestdet"


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


def test_json_names_figures_and_classes(env, detectors):
    proc = run_spotdet(env, "eval", "--model", MODEL, "--data", VAL_DIR, "--limit", "15", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert list(report["stats"]) == list(STAT_KEYS)
    assert report["stats"]["ap50_95"] == report["map50_95"] > 0
    h, w = detectors(MODEL).input_size()
    assert report["input_pixels_per_image"] == h * w
    person = next(c for c in report["per_class"] if c["name"] == "person")
    assert person["category_id"] == 1 and person["gt_boxes"] > 0 and 0 < person["ap50"] <= 100
    assert set(person) == {"category_id", "name", "gt_boxes", "ap50_95", "ap50"}


def test_table_shows_input_pixels_and_per_class(env, detectors):
    proc = run_spotdet(env, "eval", "--model", MODEL, "--data", VAL_DIR, "--limit", "5", "--per-class")
    assert proc.returncode == 0, proc.stderr
    h, w = detectors(MODEL).input_size()
    assert "input px/image" in proc.stdout and f"{h * w:,}" in proc.stdout
    assert "AP per class" in proc.stdout and "person" in proc.stdout


def test_imgsz_and_tile_are_passed_to_the_model(env, detectors):
    """--imgsz reaches DetectOptions: the native size runs, 'auto' on a fixed-size model is refused (exit 2)."""
    h, w = detectors(MODEL).input_size()
    proc = run_spotdet(env, "eval", "--model", MODEL, "--data", VAL_DIR, "--limit", "3", "--imgsz", f"{w}x{h}",
                       "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["input_pixels_per_image"] == h * w
    proc = run_spotdet(env, "eval", "--model", MODEL, "--data", VAL_DIR, "--imgsz", "auto")
    assert proc.returncode == 2 and "fixed input size" in one_line_error(proc)
    proc = run_spotdet(env, "eval", "--model", MODEL, "--data", VAL_DIR, "--imgsz", "auto", "--tile")
    assert proc.returncode == 2 and "cannot be combined" in one_line_error(proc)


def test_results_file_missing_images_warns_once(env, tmp_path):
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    covered = {i["id"] for i in meta["images"][:60]}
    results = tmp_path / "partial.json"
    results.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                    "score": 1.0} for a in meta["annotations"]
                                   if a["image_id"] in covered and not a["iscrowd"]]))
    without = len(meta["images"]) - len({a["image_id"] for a in meta["annotations"]
                                         if a["image_id"] in covered and not a["iscrowd"]})
    proc = run_spotdet(env, "eval", "--results", results, "--data", VAL_DIR, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images_without_detections"] == without >= 43
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {without} of 103 images") and "misses" in lines[0]


def test_results_file_refuses_model_options(env, tmp_path):
    proc = run_spotdet(env, "eval", "--results", tmp_path / "r.json", "--data", VAL_DIR, "--tile")
    assert proc.returncode == 2 and "--imgsz and --tile" in one_line_error(proc)


def test_plot_writes_the_chart(env, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    chart = tmp_path / "pr.png"
    proc = run_spotdet(env, "eval", "--model", MODEL, "--data", VAL_DIR, "--limit", "5", "--plot", chart, "--json")
    assert proc.returncode == 0, proc.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(proc.stdout)["images"] == 5


def test_batch_coco_default_conf_scores_like_eval(env, tmp_path, detectors):
    """Without --conf, ``batch run --format coco`` keeps what mAP needs (EVAL_CONF), so its file scores
    exactly as ``spotdet eval`` on the same images."""
    out = tmp_path / "job"
    proc = run_spotdet(env, "batch", "run", VAL_DIR / "images", "--out", out, "--model", MODEL, "--format", "coco",
                       "--workers", "1", "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    scored = run_spotdet(env, "eval", "--results", out / "results.coco.json", "--data", VAL_DIR, "--json")
    assert scored.returncode == 0, scored.stderr
    direct = evaluate(detectors(MODEL), VAL_DIR)
    assert json.loads(scored.stdout)["map50_95"] == direct.map50_95
