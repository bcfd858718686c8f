"""Happy paths of every endpoint, bad uploads and auth, against the real server process."""

import zlib
import struct

import cv2
import httpx
from support.serve import jpeg_bytes, start_server, yolox_server  # noqa: F401 (fixtures)
import numpy as np
import pytest


@pytest.fixture(scope="module")
def server(yolox_server):
    return yolox_server


def names(payload):
    return {d["class_name"] for d in payload["detections"]}


def test_predict_multipart(server, jpeg_bytes):
    r = httpx.post(f"{server.url}/predict", files={"image": ("cat.jpg", jpeg_bytes["chelsea"], "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "cat" in names(body)
    assert body["model"] == "yolox-nano" and body["precision"] == "fp32"
    assert (body["width"], body["height"]) == (451, 300)
    assert set(body["timings"]) == {"queue_ms", "decode_ms", "infer_ms", "post_ms", "total_ms"}
    assert body["timings"]["infer_ms"] > 0 and body["batch_size"] >= 1
    # cost = 3.6 $/h x busy seconds of the batch / images in it: positive and tiny.
    assert 0 < body["cost_usd"] < 3.6 / 3600 * body["timings"]["total_ms"] / 1000 * 2
    box = body["detections"][0]["box"]
    assert 0 <= box["x1"] < box["x2"] <= 451


def test_predict_raw_body_and_query_options(server, jpeg_bytes):
    r = httpx.post(f"{server.url}/predict?conf=0.5&classes=cup,41", content=jpeg_bytes["coffee"],
                   headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    dets = r.json()["detections"]
    assert dets and {d["class_name"] for d in dets} == {"cup"}
    assert all(d["confidence"] >= 0.5 for d in dets)


def test_predict_annotated_jpeg(server, jpeg_bytes):
    r = httpx.post(f"{server.url}/predict?annotate=true", files={"image": ("c.jpg", jpeg_bytes["coffee"])})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (400, 600, 3)


def test_batch_keeps_order(server, jpeg_bytes):
    files = [("images", (f"{n}.jpg", jpeg_bytes[n], "image/jpeg")) for n in ("coffee", "chelsea", "astronaut")]
    r = httpx.post(f"{server.url}/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3
    assert ["cup" in names(body["results"][0]), "cat" in names(body["results"][1]),
            "person" in names(body["results"][2])] == [True, True, True]
    assert body["cost_usd"] == pytest.approx(sum(i["cost_usd"] for i in body["results"]))


def test_models_health_ready_metrics(server, jpeg_bytes):
    models = httpx.get(f"{server.url}/models").json()
    assert models["state"] == "warm" and models["device"] == "CPUExecutionProvider"
    assert models["card"]["sha256"] and models["load_count"] == 1
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    httpx.post(f"{server.url}/predict", files={"image": ("c.jpg", jpeg_bytes["coffee"])})
    text = httpx.get(f"{server.url}/metrics").text
    for metric in ("spotdet_requests_total", "spotdet_request_latency_seconds_bucket", "spotdet_queue_depth",
                   "spotdet_batch_size_bucket", "spotdet_model_loads_total 1.0", "spotdet_model_cold_start_seconds",
                   "spotdet_busy_seconds_total", "spotdet_cost_dollars_total", "process_resident_memory_bytes",
                   "process_cpu_seconds_total"):
        assert metric in text, metric
    cost = float(next(l for l in text.splitlines() if l.startswith("spotdet_cost_dollars_total ")).split()[1])
    assert cost > 0


def test_openapi_documents_the_api(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/predict", "/predict/batch", "/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "image" in body["multipart/form-data"]["schema"]["properties"]
    params = {p["name"] for p in spec["paths"]["/predict"]["post"]["parameters"]}
    assert {"conf", "iou", "imgsz", "max_det", "classes", "annotate"} <= params


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression-bomb shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\x00" * width * 3
    raw = zlib.compress(row * 8, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case, status", [
    ("not_image", 400), ("truncated", 400), ("empty", 400), ("too_large", 413), ("bomb", 413),
    ("wrong_field", 422), ("wrong_type", 415), ("unknown_class", 400), ("bad_conf", 400), ("bad_imgsz", 400),
])
def test_bad_uploads_get_4xx_json_and_server_keeps_serving(server, jpeg_bytes, case, status):
    url = f"{server.url}/predict"
    good = jpeg_bytes["chelsea"]
    if case == "not_image":
        r = httpx.post(url, files={"image": ("x.jpg", b"hello world, not an image")})
    elif case == "truncated":
        r = httpx.post(url, files={"image": ("t.jpg", good[: len(good) // 2])})
    elif case == "empty":
        r = httpx.post(url, files={"image": ("e.jpg", b"")})
    elif case == "too_large":
        r = httpx.post(url, files={"image": ("big.jpg", good + b"\0" * (1024 * 1024))})
    elif case == "bomb":
        r = httpx.post(url, files={"image": ("bomb.png", _png_header_only(3000, 3000))})
    elif case == "wrong_field":
        r = httpx.post(url, files={"file": ("c.jpg", good)})
    elif case == "wrong_type":
        r = httpx.post(url, content=b"{}", headers={"Content-Type": "application/json"})
    elif case == "unknown_class":
        r = httpx.post(url + "?classes=unicorn", files={"image": ("c.jpg", good)})
    elif case == "bad_conf":
        r = httpx.post(url + "?conf=3", files={"image": ("c.jpg", good)})
    else:
        r = httpx.post(url + "?imgsz=640", files={"image": ("c.jpg", good)})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]
    ok = httpx.post(url, files={"image": ("c.jpg", good)})
    assert ok.status_code == 200 and "cat" in names(ok.json())


def test_api_key(start_server, jpeg_bytes):
    server = start_server("--model", "fastestdet", env={"SPOTDET_API_KEY": "s3cret-key"})
    url = f"{server.url}/predict"
    files = {"image": ("c.jpg", jpeg_bytes["coffee"])}
    assert httpx.post(url, files=files).status_code == 401
    assert httpx.post(url, files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{server.url}/models").status_code == 401
    assert httpx.post(url, files=files, headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert httpx.post(url, files=files, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert "s3cret-key" not in server.output()
