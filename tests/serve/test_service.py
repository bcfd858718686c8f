"""The service around a request: default options and per-request overrides, the out-of-memory fallback seen
over HTTP, draining on SIGTERM, utilization samples."""

import concurrent.futures
import signal
import time

import httpx
from support.oom import AllocationLimit
from support.serve import (class_names, dynamic_batch_model, jpeg_bytes, metric, post_image,  # noqa: F401
                           served, start_server)

from spotdet.serve.config import ServeConfig


def test_serve_flags_are_the_defaults_and_the_query_overrides_them(start_server, jpeg_bytes):
    server = start_server("--model", "yolox-nano", "--backend", "onnxruntime", "--conf", "0.6", "--iou", "0.5",
                          "--max-det", "5", "--classes", "cup,person")
    models = httpx.get(f"{server.url}/models").json()
    assert models["options"] == {"conf": 0.6, "iou": 0.5, "max_det": 5, "classes": ["cup", "person"],
                                 "imgsz": None, "tile": False}
    assert models["device"] == "CPUExecutionProvider"
    assert class_names(post_image(server.url, jpeg_bytes["chelsea"]).json()) == set()  # no cup or person here
    assert class_names(post_image(server.url, jpeg_bytes["chelsea"], classes="cat").json()) == {"cat"}
    # astronaut at conf 0.05: a person, a cup and a second person; the defaults keep only the sure person.
    loose = post_image(server.url, jpeg_bytes["astronaut"], conf=0.05, max_det=2).json()["detections"]
    assert len(loose) == 2 and {d["class_name"] for d in loose} <= {"cup", "person"}
    assert all(d["confidence"] >= 0.05 for d in loose)
    default = post_image(server.url, jpeg_bytes["astronaut"]).json()["detections"]
    assert [d["class_name"] for d in default] == ["person"] and default[0]["confidence"] >= 0.6


def test_an_unknown_default_class_stops_serve_at_start(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "spotdet", "serve", "--model", "fastestdet", "--lazy",
                          "--classes", "unicorn"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown class 'unicorn'" in run.stderr


def test_out_of_memory_fallback_shows_in_notes_and_metrics(dynamic_batch_model, jpeg_bytes):
    config = ServeConfig(model=dynamic_batch_model, backend="onnxruntime", model_workers=1, max_batch=8)
    with served(config) as (client, service):
        detector = service.host.loaded
        assert detector.dynamic_batch
        limit = AllocationLimit(detector.backend, max_batch=1)  # a group of 2 does not fit; 1 does
        files = [("images", (f"{n}.jpg", jpeg_bytes[n], "image/jpeg")) for n in ("chelsea", "coffee")]
        r = client.post("/predict/batch", files=files)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [s[0] for s in limit.calls] == [2, 1, 1]
        assert [res["notes"] for res in results] == [["out of memory at batch 2: split into 1+1"]] * 2
        assert "cat" in class_names(results[0]) and "cup" in class_names(results[1])
        text = client.get("/metrics").text
        assert metric(text, "spotdet_oom_fallbacks_total") == 1
        # A request that fits has no notes, and the counter stays.
        single = client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["chelsea"])}).json()
        assert "notes" not in single
        assert metric(client.get("/metrics").text, "spotdet_oom_fallbacks_total") == 1


def test_sigterm_answers_every_queued_request_then_exits_0(start_server, jpeg_bytes):
    server = start_server("--model", "yolov8n-int8", "--max-batch", "1", "--model-workers", "1",
                          "--threads", "1", "--queue-size", "64")
    n = 10
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(post_image, server.url, jpeg_bytes["astronaut"]) for _ in range(n)]
        # Wait until every request has reached the server: one image runs (--max-batch 1), the rest are
        # answered or queued, and at least 2 are still queued when the signal comes.
        deadline = time.monotonic() + 30
        while True:
            queued = metric(httpx.get(f"{server.url}/metrics").text, "spotdet_queue_depth")
            answered = sum(f.done() for f in futures)
            if queued >= 2 and queued + answered >= n - 1:
                break
            assert time.monotonic() < deadline, f"requests never queued up ({queued} queued, {answered} answered)"
        server.proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * n
    assert all("person" in class_names(r.json()) for r in responses)
    assert server.proc.wait(30) == 0
    assert "Finished server process" in server.output()


def test_service_logs_utilization_samples(start_server, jpeg_bytes, tmp_path):
    import sqlite3

    db = tmp_path / "util.sqlite"
    server = start_server("--model", "fastestdet", "--monitor-db", str(db))
    assert post_image(server.url, jpeg_bytes["chelsea"]).status_code == 200
    time.sleep(2.5)
    server.stop()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*), MAX(proc_rss_mb) FROM samples").fetchone()
    assert rows[0] >= 2 and rows[1] > 10  # samples every second, with the server's own RSS in MB
