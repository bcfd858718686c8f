"""Refusals as HTTP answers: status, the JSON body {"error", "status"}, Retry-After; the server keeps serving."""

import concurrent.futures
import struct
import zlib

import httpx
import pytest
from support.oom import AllocationLimit
from support.serve import (class_names, jpeg_bytes, post_image, served, start_server,  # noqa: F401 (fixtures)
                           yolox_server)

from spotdet.serve.config import ServeConfig


def assert_error_body(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status and body["error"]
    return body["error"]


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression-bomb shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\x00" * width * 3
    raw = zlib.compress(row * 8, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case, status, says", [
    ("not_image", 400, "not a decodable image"), ("truncated", 400, "truncated"), ("empty", 400, "empty"),
    ("too_large", 413, "--max-upload-mb"), ("bomb", 413, "pixel"), ("wrong_field", 422, "'image'"),
    ("wrong_type", 415, "unsupported content type"), ("unknown_class", 400, "unknown class 'unicorn'"),
    ("bad_conf", 400, "conf"), ("bad_imgsz", 400, "fixed input"), ("two_images", 400, "Maximum number of files is 1"),
])
def test_bad_requests_get_4xx_json_and_server_keeps_serving(yolox_server, jpeg_bytes, case, status, says):
    url = f"{yolox_server.url}/predict"
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
    elif case == "bad_imgsz":
        r = httpx.post(url + "?imgsz=640", files={"image": ("c.jpg", good)})
    else:
        r = httpx.post(url, files=[("image", ("a.jpg", good)), ("image", ("b.jpg", good))])
    assert says in assert_error_body(r, status)
    ok = httpx.post(url, files={"image": ("c.jpg", good)})
    assert ok.status_code == 200 and "cat" in class_names(ok.json())


def test_flood_with_small_queue_gets_503_with_retry_after(start_server, jpeg_bytes):
    server = start_server("--model", "yolov8n-int8", "--queue-size", "2", "--max-batch", "1")
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["coffee"]), range(24)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) > 0 and codes.count(200) > 0, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert "queue is full" in assert_error_body(rejected, 503) and rejected.headers["retry-after"] == "1"
    assert post_image(server.url, jpeg_bytes["coffee"]).status_code == 200


def test_request_timeout_is_504(start_server, jpeg_bytes):
    server = start_server("--model", "yolov8n-int8", "--max-batch", "1", "--timeout", "0.05")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["coffee"]), range(6)))
    codes = [r.status_code for r in responses]
    assert 504 in codes and set(codes) <= {200, 504}, codes
    timed_out = next(r for r in responses if r.status_code == 504)
    assert "timed out after 0.05 s" in assert_error_body(timed_out, 504)


def test_out_of_memory_after_every_fallback_is_503_with_retry_after(jpeg_bytes):
    # fastestdet has a fixed input size: one image that does not fit cannot be retried smaller.
    config = ServeConfig(model="fastestdet", backend="onnxruntime", model_workers=1)
    with served(config) as (client, service):
        AllocationLimit(service.host.loaded.backend, max_batch=0)
        r = client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["chelsea"])})
        assert "out of memory" in assert_error_body(r, 503) and r.headers["retry-after"] == "5"
        assert service.metrics.registry.get_sample_value("spotdet_oom_fallbacks_total") == 0


def test_an_unexpected_error_is_500_json_naming_only_its_type(jpeg_bytes):
    def broken(tensor):
        raise KeyError("secret internals")

    config = ServeConfig(model="fastestdet", model_workers=1)
    with served(config, raise_server_exceptions=False) as (client, service):
        service.host.loaded.backend.run = broken
        r = client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["chelsea"])})
        assert assert_error_body(r, 500) == "internal error: KeyError"
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("query, names", [
    ("conf=abc", "query parameter 'conf'"), ("tile=perhaps", "query parameter 'tile'"),
    ("annotate=perhaps", "query parameter 'annotate'"),
])
def test_fastapi_validation_errors_have_the_documented_shape(yolox_server, jpeg_bytes, query, names):
    r = httpx.post(f"{yolox_server.url}/predict?{query}", files={"image": ("c.jpg", jpeg_bytes["chelsea"])})
    message = assert_error_body(r, 422)
    assert message.startswith(names + ": ") and repr(query.split("=")[1]) in message, message


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_an_empty_class_list_is_400_not_an_empty_result(yolox_server, jpeg_bytes, path):
    field = "image" if path == "/predict" else "images"
    r = httpx.post(f"{yolox_server.url}{path}?classes=,,,", files={field: ("c.jpg", jpeg_bytes["chelsea"])})
    assert assert_error_body(r, 400) == "classes is empty: name at least one class, or leave it out to keep all"


def test_a_failed_model_reload_is_500_without_server_paths(start_server, jpeg_bytes, tmp_path):
    import shutil
    import time

    from support.paths import MODEL_DIR

    models = tmp_path / "private-model-dir"
    models.mkdir()
    shutil.copy(MODEL_DIR / "fastestdet.onnx", models / "fastestdet.onnx")
    server = start_server("--model", "fastestdet", "--idle-unload", "0.3", env={"SPOTDET_MODEL_DIR": str(models)})
    assert post_image(server.url, jpeg_bytes["chelsea"]).status_code == 200
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/models").json()["state"] != "cold":  # scaled to zero
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (models / "fastestdet.onnx").write_bytes(b"not a model any more" * 100)  # damaged while cold
    message = assert_error_body(post_image(server.url, jpeg_bytes["chelsea"]), 500)
    assert message.startswith("the model could not be loaded (") and "server log" in message
    for said in (message, httpx.get(f"{server.url}/readyz").json()["last_error"],
                 httpx.get(f"{server.url}/models").json()["last_error"]):
        assert said == message and "/" not in said and "private-model-dir" not in said
    assert httpx.get(f"{server.url}/readyz").status_code == 503
    assert str(models) in server.output()  # the operator still sees where and why


def test_an_imgsz_that_is_not_a_size_is_400_naming_the_forms(yolox_server, jpeg_bytes):
    r = httpx.post(f"{yolox_server.url}/predict?imgsz=big", files={"image": ("c.jpg", jpeg_bytes["chelsea"])})
    assert assert_error_body(r, 400) == "imgsz must be a positive integer, WxH or 'auto', got 'big'"


@pytest.mark.parametrize("method, path, status, says", [
    ("GET", "/no/such/path", 404, "Not Found"), ("POST", "/healthz", 405, "Method Not Allowed"),
    ("GET", "/predict", 405, "Method Not Allowed"),
])
def test_the_frameworks_own_refusals_have_the_one_shape(yolox_server, method, path, status, says):
    """Starlette's 404 and 405 come back in the service's error body, not FastAPI's {"detail": ...}."""
    r = httpx.request(method, yolox_server.url + path)
    assert assert_error_body(r, status) == says
    if status == 405:
        assert r.headers["allow"] == ("GET" if method == "POST" else "POST")  # the header is kept


def test_an_unknown_v2_model_is_404_in_the_one_shape(yolox_server):
    r = httpx.get(f"{yolox_server.url}/v2/models/resnet50")
    assert assert_error_body(r, 404) == "unknown model 'resnet50': this server serves 'yolox-nano'"
