"""``spotdet detect`` on the sources ``yolo predict`` takes: folders, globs, list files, URLs and videos, with
unique --save names, YOLO --save-txt labels and --precision (the real CLI, real model, real HTTP server)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from support.batch import cli_env, one_line_error, run_spotdet
from support.media import make_video, serve_files

MODEL = "yolox-nano"


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


@pytest.fixture
def media(tmp_path, photos, val_images):
    """Two folders each holding an ``img.jpg`` (different photos), a video, and the cat as JPEG bytes."""
    for folder, source in (("a", val_images[0]), ("b", val_images[1])):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "img.jpg")
    video = make_video(tmp_path / "clip.mp4", photos["chelsea"], frames=9)
    return tmp_path, video, cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()


def test_folders_globs_and_video_with_unique_save_names_and_yolo_labels(env, media):
    root, video, _ = media
    save, labels = root / "annotated", root / "labels"
    proc = run_spotdet(env, "detect", root / "a", root / "b", root / "*.mp4", "-m", MODEL, "--vid-stride", "4",
                       "--save", save, "--save-txt", labels, "--save-conf", "--json")
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)
    assert [(i["path"], i.get("frame")) for i in items] == [
        (str(root / "a/img.jpg"), None), (str(root / "b/img.jpg"), None), (str(video), 0), (str(video), 4),
        (str(video), 8)]
    names = ["img", "img_2", "clip_000000", "clip_000004", "clip_000008"]
    assert [i["saved"] for i in items] == [str(save / f"{n}.jpg") for n in names]  # nothing overwritten
    assert [i["labels"] for i in items] == [str(labels / f"{n}.txt") for n in names]
    assert sorted(p.name for p in save.iterdir()) == sorted(f"{n}.jpg" for n in names)
    for item in items:  # each label file is its own image's detections, normalised, with the confidence
        lines = [line.split() for line in open(item["labels"]).read().splitlines()]
        assert len(lines) == len(item["detections"])
        for (cls, cx, cy, w, h, conf), d in zip(lines, item["detections"]):
            b, W, H = d["box"], item["width"], item["height"]
            assert int(cls) == d["class_id"] and float(conf) == pytest.approx(d["confidence"], abs=1e-5)
            assert [float(cx) * W, float(cy) * H, float(w) * W, float(h) * H] == pytest.approx(
                [(b["x1"] + b["x2"]) / 2, (b["y1"] + b["y2"]) / 2, b["x2"] - b["x1"], b["y2"] - b["y1"]], abs=0.02)
    assert all("cat" in [d["class_name"] for d in i["detections"]] for i in items[2:])  # the cat in every frame
    # two inputs of the same name got different pictures, not one picture twice
    assert not np.array_equal(cv2.imread(str(save / "img.jpg")), cv2.imread(str(save / "img_2.jpg")))


def test_urls_and_list_files_and_one_error_line_per_bad_source(env, media):
    root, _, jpeg = media
    routes = {"/photos/cat.jpg?size=large": (200, {}, jpeg, 0.0), "/page": (200, {}, b"<html></html>", 0.0)}
    with serve_files(routes) as base:
        listing = root / "list.txt"
        listing.write_text(f"a/img.jpg\n{base}/photos/cat.jpg?size=large\n{base}/missing.jpg\n")
        (root / "photo").write_bytes(jpeg)  # a JPEG without an extension: not a list, read as an image
        proc = run_spotdet(env, "detect", listing, f"{base}/page", root / "nothing-here", root / "empty*.png",
                           root / "photo", "-m", MODEL, "--json", "--save", root / "out")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    items = json.loads(proc.stdout)
    assert [i["path"] for i in items] == [str(root / "a/img.jpg"), f"{base}/photos/cat.jpg?size=large",
                                          str(root / "photo")]
    assert "cat" in [d["class_name"] for d in items[1]["detections"]]
    assert items[1]["saved"] == str(root / "out" / "cat.jpg")  # a URL's file name, without its query
    errors = proc.stderr.splitlines()
    assert errors == [f"error: {base}/missing.jpg: HTTP 404 Not Found",
                      f"error: {base}/page: image bytes: not a decodable image (not an image format spotdet reads)",
                      f"error: {root / 'nothing-here'}: no such file",
                      f"error: {root / 'empty*.png'}: no file matches this pattern",
                      "error: 4 of 7 image(s) could not be read"], proc.stderr


def test_precision_reaches_the_model_resolution(env, media):
    root, _, _ = media
    proc = run_spotdet(env, "detect", root / "a", "-m", MODEL, "--precision", "int8-static")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "no int8-static variant of yolox-nano" in line and "spotdet optimize yolox-nano" in line
