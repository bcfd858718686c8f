"""Backpressure, scale to zero, warm windows and graceful drain, against the real server process."""

import concurrent.futures
import signal
import time
from datetime import datetime

import httpx
from support.serve import jpeg_bytes, start_server, yolox_server  # noqa: F401 (fixtures)

from spotdet.serve.config import ServeConfig
from spotdet.serve.host import ModelHost
from spotdet.serve.metrics import ServiceMetrics


def post_image(url, data, timeout=60):
    return httpx.post(f"{url}/predict", files={"image": ("x.jpg", data, "image/jpeg")}, timeout=timeout)


def metric(text, name):
    line = next(l for l in text.splitlines() if l.startswith(name + " "))
    return float(line.split()[1])


def test_flood_with_small_queue_gets_503_with_retry_after(start_server, jpeg_bytes):
    server = start_server("--model", "yolov8n-int8", "--queue-size", "2", "--max-batch", "1")
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["coffee"]), range(24)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) > 0 and codes.count(200) > 0, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1" and "queue is full" in rejected.json()["error"]
    assert post_image(server.url, jpeg_bytes["coffee"]).status_code == 200


def test_concurrent_requests_are_grouped_up_to_max_batch(start_server, jpeg_bytes):
    # Static batch-1 model: a group runs back to back; batch_size is the size of the group that served it.
    server = start_server("--model", "fastestdet", "--max-batch", "3", "--max-wait-ms", "20")
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["chelsea"]), range(9)))
    assert all(r.status_code == 200 for r in responses)
    sizes = [r.json()["batch_size"] for r in responses]
    assert all(1 <= n <= 3 for n in sizes), sizes
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_batch_size_sum") == 9  # every image counted once, in some group
    assert metric(text, "spotdet_images_total") == 9


def test_idle_unload_then_reload_on_demand(start_server, jpeg_bytes):
    server = start_server("--model", "fastestdet", "--idle-unload", "1")
    assert post_image(server.url, jpeg_bytes["chelsea"]).status_code == 200
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/models").json()["state"] != "cold":
        assert time.monotonic() < deadline, "model was not unloaded after 1 s idle"
        time.sleep(0.2)
    models = httpx.get(f"{server.url}/models").json()
    assert models["device"] is None and models["unload_count"] == 1
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_model_loaded") == 0 and metric(text, "spotdet_model_unloads_total") == 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # cold is still ready: it loads on demand
    r = post_image(server.url, jpeg_bytes["chelsea"])
    assert r.status_code == 200 and "cat" in {d["class_name"] for d in r.json()["detections"]}
    models = httpx.get(f"{server.url}/models").json()
    assert models["load_count"] == 2 and models["last_cold_start_s"] > 0
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_model_cold_start_seconds_count") == 2
    assert metric(text, "spotdet_model_loaded") == 1


def test_warm_window_loads_and_keeps_the_model(start_server, jpeg_bytes):
    # A window covering the whole week: the lazy server loads without any request and never unloads.
    server = start_server("--model", "fastestdet", "--lazy", "--idle-unload", "0.5",
                          "--warm-window", "mon-sun 00:00-24:00")
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/models").json()["state"] != "warm":
        assert time.monotonic() < deadline, "warm window did not load the model"
        time.sleep(0.2)
    time.sleep(1.5)
    models = httpx.get(f"{server.url}/models").json()
    assert models["state"] == "warm" and models["unload_count"] == 0 and models["in_warm_window"] is True


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_window_policy_with_an_injected_clock():
    clock = FakeClock(datetime(2026, 11, 23, 8, 59))  # a Monday, one minute before the window
    config = ServeConfig(model="fastestdet", warm_windows=["mon-fri 09:00-18:00"], idle_unload_s=0.05,
                         clock=clock)
    host = ModelHost(config, ServiceMetrics())
    assert host.state == "cold" and host.tick() is None and not host.in_warm_window()
    clock.now = datetime(2026, 11, 23, 9, 0)
    assert host.tick() == "load (warm window)" and host.state == "warm"
    time.sleep(0.1)
    assert host.tick() is None and host.state == "warm"  # idle, but inside the window
    clock.now = datetime(2026, 11, 23, 18, 0)  # window over
    assert host.tick() == "unload" and host.state == "cold"
    clock.now = datetime(2026, 11, 28, 10, 0)  # Saturday: stays cold
    assert host.tick() is None and host.state == "cold"
    host.detector()  # a request on Saturday loads it on demand...
    host.acquire()
    time.sleep(0.1)
    assert host.tick() is None  # ...and a request in flight is never unloaded under it
    host.release()
    time.sleep(0.1)
    assert host.tick() == "unload"


def test_sigterm_drains_queued_requests(start_server, jpeg_bytes):
    server = start_server("--model", "yolov8n-int8", "--max-batch", "1", "--queue-size", "64")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post_image, server.url, jpeg_bytes["astronaut"]) for _ in range(8)]
        time.sleep(0.3)  # let the requests reach the queue
        server.proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 8
    assert all("person" in {d["class_name"] for d in r.json()["detections"]} for r in responses)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the process ends by that signal.
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.output()


def test_request_timeout_is_504(start_server, jpeg_bytes):
    server = start_server("--model", "yolov8n-int8", "--max-batch", "1", "--timeout", "0.05")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["coffee"]), range(6)))
    codes = [r.status_code for r in responses]
    assert 504 in codes and set(codes) <= {200, 504}, codes
    assert "timed out" in next(r for r in responses if r.status_code == 504).json()["error"]


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


def test_dynamic_batch_model_serves_a_group_in_one_run(start_server, jpeg_bytes, tmp_path):
    from spotdet.optimize.api import optimize

    made = optimize("yolox-nano", dynamic_batch=True, out=tmp_path / "yolox_nano_b.onnx", progress=False)
    server = start_server("--model", str(made.path),
                          "--max-batch", "8", "--max-wait-ms", "200", "--model-workers", "1")
    assert httpx.get(f"{server.url}/models").json()["model"] == "yolox-nano-dynbatch"
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["chelsea"]), range(6)))
    assert all(r.status_code == 200 for r in responses)
    assert all("cat" in {d["class_name"] for d in r.json()["detections"]} for r in responses)
    sizes = [r.json()["batch_size"] for r in responses]
    assert max(sizes) > 1, sizes  # 6 concurrent requests within 200 ms share a session.run
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_batch_size_count") < 6  # fewer model calls than requests
