"""`spotdet batch run|resume|status` through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.batch import COCO128, FAST_MODEL, cli_env, one_line_error, read_jsonl, spotdet_exe, without_timings

TIMEOUT = 120


@pytest.fixture
def run(tmp_path):
    env = cli_env(tmp_path / "cache")

    def _run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([spotdet_exe(), "batch", *map(str, args)], env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
    return _run


def test_run_status_and_progress(run, tmp_path, val_images):
    images = tmp_path / "imgs"
    (images / "sub").mkdir(parents=True)
    for p in val_images[:5]:
        (images / "sub" / p.name).write_bytes(p.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "job"
    proc = run("run", images, "--out", out, "--model", "fastestdet", "--shard-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "complete: 6/6 image(s) done (5 ok, 1 failed)" in proc.stdout
    assert "img/s" in proc.stderr and "ETA" in proc.stderr  # the progress bar
    lines = read_jsonl(out / "results.jsonl")
    assert len(lines) == 6 and sum("error" in line for line in lines) == 1

    status = run("status", out)
    assert status.returncode == 0
    assert "complete" in status.stdout and "broken.png" in status.stdout and "3/3" in status.stdout
    as_json = json.loads(run("status", out, "--json").stdout)
    assert as_json["state"] == "complete" and as_json["images_failed"] == 1
    assert as_json["failures"][0]["path"] == str(images / "broken.png")

    summary = json.loads(run("resume", out, "--json").stdout)  # nothing left: the outputs are rewritten
    assert summary["state"] == "complete" and summary["run_images"] == 0


def test_lines_match_detect_json_and_take_classes_and_backend(run, tmp_path, val_images):
    """A results.jsonl line is `spotdet detect --json`'s result plus its index: same keys, same detections."""
    images = [str(p) for p in val_images[:4]]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(images) + "\n")
    flags = ["--model", FAST_MODEL, "--classes", "person,2", "--conf", "0.3", "--backend", "onnxruntime"]
    proc = run("run", listing, "--out", tmp_path / "job", *flags, "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(tmp_path / "job" / "results.jsonl")
    detect = subprocess.run([spotdet_exe(), "detect", *images, *flags, "--json"], env=cli_env(tmp_path / "cache"),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert detect.returncode == 0, detect.stderr
    expected = [{"index": k, **{key: v for key, v in d.items() if key != "saved"}}
                for k, d in enumerate(json.loads(detect.stdout))]
    assert without_timings(lines) == without_timings(expected)
    assert all(set(line["timings"]) == set(d["timings"]) for line, d in zip(lines, expected))
    names = {det["class_name"] for line in lines for det in line["detections"]}
    assert "person" in names and names <= {"person", "car"}
    status = json.loads(run("status", tmp_path / "job", "--json").stdout)
    assert status["spec"]["options"]["classes"] == ["person", 2]


@pytest.mark.parametrize("args, message", [
    (("run", "nowhere/", "--out", "{tmp}/j", "--model", "fastestdet"), "no such folder"),
    (("run", "{imgs}", "--out", "{tmp}/j", "--model", "fastestdet", "--format", "xml"), "--format"),
    (("run", "{imgs}", "--out", "{tmp}/j", "--model", "nope-model"), "nope-model"),
    (("run", "{imgs}", "--out", "{tmp}/j", "--model", "fastestdet", "--classes", "unicorn"), "unknown class"),
    (("run", "{imgs}", "--out", "{tmp}/j", "--model", "fastestdet", "--backend", "tf"), "backend must be one of"),
    (("run", "{imgs}", "--out", "{tmp}/j", "--model", "fastestdet", "--imgsz", "640", "-q"), "fixed input of 352x352"),
    (("resume", "{tmp}"), "no batch job here"),
    (("status", "{tmp}"), "no batch job here"),
])
def test_usage_errors_exit_2_with_one_line(run, tmp_path, val_images, args, message):
    filled = [a.format(tmp=tmp_path, imgs=val_images[0].parent) for a in args]
    proc = run(*filled)
    assert proc.returncode == 2, proc.stderr
    assert message in one_line_error(proc)


def test_missing_ray_says_what_to_install(tmp_path, val_images):
    code = ("import sys; sys.modules['ray'] = None; sys.argv = ['spotdet'] + sys.argv[1:]; "
            "from spotdet.cli.main import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, "batch", "run", str(val_images[0]), "--out",
                           str(tmp_path / "j"), "--model", "fastestdet", "--engine", "ray"],
                          env=cli_env(tmp_path / "cache"), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert "pip install 'spotdet[ray]'" in one_line_error(proc)


def test_pixel_limit_makes_failed_items_with_the_reason(run, tmp_path, val_images):
    """The default limit (the service's) refuses a PNG whose header claims 8000x8000 as a failed item, from
    its header; --max-pixels sets another limit, stored with the job."""
    from spotdet.vision.image_io import DEFAULT_MAX_PIXELS
    from support.batch import png_claiming

    images = tmp_path / "imgs"
    images.mkdir()
    for p in val_images[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    huge = png_claiming(images / "huge.png", 8000, 8000)
    proc = run("run", images, "--out", tmp_path / "job", "--model", FAST_MODEL, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "complete: 4/4 image(s) done (3 ok, 1 failed)" in proc.stdout
    (failed,) = [line for line in read_jsonl(tmp_path / "job" / "results.jsonl") if "error" in line]
    assert failed["path"] == str(huge)
    assert failed["error"] == f"{huge}: 8000x8000 = 64000000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS} " \
                              "(--max-pixels)"
    status = json.loads(run("status", tmp_path / "job", "--json").stdout)
    assert status["spec"]["max_pixels"] == DEFAULT_MAX_PIXELS
    assert status["failures"][0]["reason"] == failed["error"]

    proc = run("run", images, "--out", tmp_path / "small", "--model", FAST_MODEL, "--max-pixels", "1000", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images_failed"] == 4 and summary["images_ok"] == 0
    lines = read_jsonl(tmp_path / "small" / "results.jsonl")
    assert all("exceeds the limit of 1000" in line["error"] for line in lines)


def test_a_video_source_with_vid_stride(run, tmp_path, photos):
    from support.media import make_video

    video = make_video(tmp_path / "clip.avi", photos["chelsea"], frames=8)
    out = tmp_path / "job"
    proc = run("run", video, "--out", out, "--model", FAST_MODEL, "--vid-stride", "3", "--json", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images_total"] == 3
    lines = read_jsonl(out / "results.jsonl")
    assert [(line["path"], line["frame"]) for line in lines] == [(str(video), f) for f in (0, 3, 6)]
    assert all("error" not in line for line in lines)


def test_a_malformed_url_is_one_failed_item_not_a_failed_shard(run, tmp_path):
    """``http://[::1`` cannot even be parsed: it fails as its own item, the shard's images run, and resume
    finds nothing left to do."""
    images = [str(p) for p in sorted(COCO128.glob("*.jpg"))[:2]]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{images[0]}\nhttp://[::1\n{images[1]}\n")
    out = tmp_path / "job"
    proc = run("run", listing, "--out", out, "--model", FAST_MODEL, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "complete: 3/3 image(s) done (2 ok, 1 failed)" in proc.stdout
    lines = read_jsonl(out / "results.jsonl")
    assert [line["path"] for line in lines] == [images[0], "http://[::1", images[1]]
    assert [line.get("error") for line in lines] == [None, "http://[::1: not a valid URL (Invalid IPv6 URL)", None]
    assert json.loads(run("resume", out, "--json").stdout)["run_images"] == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_a_folder_is_one_failed_item_not_a_hang(run, tmp_path):
    """Reading a FIFO named like an image would wait for a writer forever (the run's timeout fails the test)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = sorted(COCO128.glob("*.jpg"))[0]
    (folder / image.name).write_bytes(image.read_bytes())
    os.mkfifo(folder / "x.jpg")
    proc = run("run", folder, "--out", tmp_path / "job", "--model", FAST_MODEL, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "complete: 2/2 image(s) done (1 ok, 1 failed)" in proc.stdout
    lines = read_jsonl(tmp_path / "job" / "results.jsonl")
    assert [(line["path"], line.get("error")) for line in lines] == [
        (str(folder / image.name), None), (str(folder / "x.jpg"), f"{folder / 'x.jpg'}: not a file (a FIFO)")]
