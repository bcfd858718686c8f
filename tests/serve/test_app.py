"""The HTTP API: every route's happy path against the real server process, and the route table."""

import cv2
import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute
from support.serve import class_names, jpeg_bytes, yolox_server  # noqa: F401 (fixtures)

from spotdet.options import DetectOptions
from spotdet.results import TIMING_KEYS
from spotdet.serve import routes

SERVICE_KEYS = {"precision", "cost_usd"}  # what the service adds beside Result.to_dict()'s keys
SERVICE_TIMINGS = {"queue_ms"}


def test_predict_multipart(yolox_server, jpeg_bytes):
    files = {"image": ("cat.jpg", jpeg_bytes["chelsea"], "image/jpeg")}
    r = httpx.post(f"{yolox_server.url}/predict", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "cat" in class_names(body)
    assert body["model"] == "yolox-nano" and body["precision"] == "fp32"
    assert (body["width"], body["height"]) == (451, 300) and body["input_size"] == [416, 416]
    assert set(body["timings"]) == {*TIMING_KEYS, "queue_ms"}
    assert body["timings"]["infer_ms"] > 0 and body["batch_size"] >= 1
    # The whole request: at least its stages and its time in the queue.
    stages = sum(v for k, v in body["timings"].items() if k != "total_ms")
    assert body["timings"]["total_ms"] >= stages - 0.01
    # cost = 3.6 $/h x busy seconds of the batch / images in it: positive and tiny.
    assert 0 < body["cost_usd"] < 3.6 / 3600 * body["timings"]["total_ms"] / 1000 * 2
    box = body["detections"][0]["box"]
    assert 0 <= box["x1"] < box["x2"] <= 451


def test_predict_answers_result_to_dict_plus_the_service_keys(yolox_server, jpeg_bytes, tmp_path):
    """No hand-rebuilt payload: the keys are Result.to_dict()'s, plus precision, cost_usd and queue_ms."""
    from spotdet import Detector

    path = tmp_path / "chelsea.jpg"
    path.write_bytes(jpeg_bytes["chelsea"])
    local = Detector("yolox-nano")(str(path))[0].to_dict()
    body = httpx.post(f"{yolox_server.url}/predict", files={"image": ("c.jpg", jpeg_bytes["chelsea"])}).json()
    assert set(body) == set(local) | SERVICE_KEYS
    assert set(body["timings"]) == set(local["timings"]) | SERVICE_TIMINGS
    assert [set(d) for d in body["detections"]] == [set(d) for d in local["detections"]]
    assert [d["class_name"] for d in body["detections"]] == [d["class_name"] for d in local["detections"]]
    for got, want in zip(body["detections"], local["detections"]):
        assert got["box"] == pytest.approx(want["box"], abs=0.05)
    assert {k: body[k] for k in ("model", "width", "height", "input_size")} == \
           {k: local[k] for k in ("model", "width", "height", "input_size")}


def test_predict_raw_body_and_query_options(yolox_server, jpeg_bytes):
    r = httpx.post(f"{yolox_server.url}/predict?conf=0.5&classes=cup,41", content=jpeg_bytes["coffee"],
                   headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    dets = r.json()["detections"]
    assert dets and {d["class_name"] for d in dets} == {"cup"}
    assert all(d["confidence"] >= 0.5 for d in dets)


def test_predict_annotated_jpeg(yolox_server, jpeg_bytes):
    r = httpx.post(f"{yolox_server.url}/predict", params={"annotate": "true"},
                   files={"image": ("c.jpg", jpeg_bytes["coffee"])})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (400, 600, 3)


def test_batch_keeps_order(yolox_server, jpeg_bytes):
    files = [("images", (f"{n}.jpg", jpeg_bytes[n], "image/jpeg")) for n in ("coffee", "chelsea", "astronaut")]
    r = httpx.post(f"{yolox_server.url}/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["model"] == "yolox-nano"
    assert ["cup" in class_names(body["results"][0]), "cat" in class_names(body["results"][1]),
            "person" in class_names(body["results"][2])] == [True, True, True]
    assert body["cost_usd"] == pytest.approx(sum(i["cost_usd"] for i in body["results"]))


def test_models_health_ready_metrics(yolox_server, jpeg_bytes):
    models = httpx.get(f"{yolox_server.url}/models").json()
    # the service keeps ONNX Runtime under auto (ServeConfig.runtime says why)
    assert models["state"] == "warm" and models["backend"] == "onnxruntime"
    assert models["device"] == "CPUExecutionProvider"
    assert models["card"]["sha256"] and models["load_count"] == 1
    assert models["options"] == DetectOptions().to_dict()  # no --conf/--classes/... flags: the defaults
    assert httpx.get(f"{yolox_server.url}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{yolox_server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    httpx.post(f"{yolox_server.url}/predict", files={"image": ("c.jpg", jpeg_bytes["coffee"])})
    text = httpx.get(f"{yolox_server.url}/metrics").text
    for metric in ("spotdet_requests_total", "spotdet_request_latency_seconds_bucket", "spotdet_queue_depth",
                   "spotdet_batch_size_bucket", "spotdet_model_loads_total 1.0", "spotdet_model_cold_start_seconds",
                   "spotdet_busy_seconds_total", "spotdet_cost_dollars_total", "process_resident_memory_bytes",
                   "process_cpu_seconds_total"):
        assert metric in text, metric
    cost = float(next(l for l in text.splitlines() if l.startswith("spotdet_cost_dollars_total ")).split()[1])
    assert cost > 0


def test_openapi_documents_the_api(yolox_server):
    spec = httpx.get(f"{yolox_server.url}/openapi.json").json()
    assert {"/predict", "/predict/batch", "/models", "/healthz", "/readyz", "/metrics", "/v2", "/v2/health/live",
            "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
            "/v2/models/{name}/infer"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "image" in body["multipart/form-data"]["schema"]["properties"]
    params = {p["name"] for p in spec["paths"]["/predict"]["post"]["parameters"]}
    assert {"conf", "iou", "imgsz", "max_det", "classes", "annotate"} <= params
    batch_params = {p["name"] for p in spec["paths"]["/predict/batch"]["post"]["parameters"]}
    assert batch_params == {"conf", "iou", "imgsz", "max_det", "classes", "tile"}
    assert httpx.get(f"{yolox_server.url}/docs").status_code == 200


def test_the_route_table_is_what_the_app_serves():
    from spotdet.serve.app import create_app
    from spotdet.serve.config import ServeConfig

    app = create_app(ServeConfig(model="fastestdet", preload=False))  # no lifespan: nothing is loaded
    served = {(m, r.path, r.summary) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    own = {(r.method, r.path, r.summary) for r in routes.ROUTES if r not in (routes.DOCS, routes.OPENAPI)}
    assert served == own
    assert (app.docs_url, app.openapi_url) == (routes.DOCS.path, routes.OPENAPI.path)
    assert routes.OPEN_PATHS == {"/healthz", "/readyz", "/docs", "/openapi.json", "/", "/console",
                                 "/v2/health/live", "/v2/health/ready"}
    assert routes.is_open("/console/app.js") and not routes.is_open("/stats") and not routes.is_open("/consoles")
    assert not routes.is_open("/v2/models/yolox-nano/infer") and not routes.is_open("/v2")
    assert [routes.metric_label(p) for p in ("/predict", "/metrics", "/docs", "/nope")] == \
           ["/predict", "/metrics", "other", "other"]


def test_a_path_with_a_name_is_labelled_by_its_template():
    """Whatever model names clients send, the metrics' endpoint labels stay the route table's few."""
    assert [routes.metric_label(p) for p in ("/v2/models/yolox-nano/infer", "/v2/models/anything",
                                             "/v2/models/x/ready", "/v2/models/a/b/infer", "/v2/models//infer",
                                             "/v2")] == \
           ["/v2/models/{name}/infer", "/v2/models/{name}", "/v2/models/{name}/ready", "other", "other", "/v2"]
