"""One result schema across the sinks: `spotdet detect --json`, `POST /predict` and `spotdet batch` jsonl lines
carry the same detection and timing keys, with the same values for the same image and model."""

from __future__ import annotations

import json
import subprocess

import cv2
import httpx

from spotdet.results import TIMING_KEYS
from support.batch import cli_env, read_jsonl, spotdet_exe
from support.serve import post_image, start_server  # noqa: F401 (fixture)

MODEL = "fastestdet"


def test_detect_http_and_batch_share_keys_and_detections(tmp_path, photos, start_server):
    image = tmp_path / "images" / "cat.jpg"
    image.parent.mkdir()
    cv2.imwrite(str(image), photos["chelsea"])
    env = cli_env(tmp_path / "cache")
    detect = subprocess.run([spotdet_exe(), "detect", str(image), "--model", MODEL, "--json", "--backend",
                             "onnxruntime"], env=env, capture_output=True, text=True, timeout=300)
    assert detect.returncode == 0, detect.stderr
    from_cli = json.loads(detect.stdout)[0]
    batch = subprocess.run([spotdet_exe(), "batch", "run", str(image.parent), "--out", str(tmp_path / "job"),
                            "--model", MODEL, "--backend", "onnxruntime", "--quiet"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert batch.returncode == 0, batch.stderr
    from_batch = read_jsonl(tmp_path / "job" / "results.jsonl")[0]
    server = start_server("--model", MODEL, "--backend", "onnxruntime")
    from_http = post_image(server.url, image.read_bytes()).json()

    shared = {"model", "width", "height", "input_size", "input_sizes", "input_pixels", "batch_size", "detections",
              "timings"}
    for name, item in (("detect --json", from_cli), ("POST /predict", from_http), ("batch jsonl", from_batch)):
        assert shared <= set(item), f"{name} lacks {shared - set(item)}"
        assert set(TIMING_KEYS) <= set(item["timings"]), name
        assert item["detections"] and item["detections"] == from_cli["detections"], name
        assert (item["width"], item["height"], item["input_size"]) == (451, 300, [352, 352]), name
    # each sink adds only its own keys beside the Result's
    assert set(from_cli) - shared == {"path", "saved"}
    assert set(from_batch) - shared == {"path", "index"}
    assert set(from_http) - shared == {"path", "precision", "cost_usd"} and "queue_ms" in from_http["timings"]
