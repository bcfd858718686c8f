"""The Open Inference Protocol (KServe v2 / Triton HTTP) against the real server process: with the official
``tritonclient.http`` client, and with requests written from the protocol's text (JSON, base64, the binary
tensor extension by hand), and the parser's refusals."""

import base64
import json
import struct

import httpx
import numpy as np
import pytest
from support.serve import jpeg_bytes, metric, start_server, yolox_server  # noqa: F401 (fixtures)

from spotdet.serve import oip, schemas
from spotdet.serve.uploads import UploadError

MODEL = "yolox-nano"
TRITON = "tritonclient.http"


def infer_url(server, model=MODEL):
    return f"{server.url}/v2/models/{model}/infer"


def image_input(data: bytes) -> dict:
    """The image as the protocol's JSON carries bytes: base64 text in a BYTES tensor."""
    return {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(data).decode()]}


def binary_request(request: dict, *blobs: bytes) -> tuple[bytes, dict]:
    """The binary tensor extension written from the protocol's text: JSON, then the raw tensors."""
    header = json.dumps(request).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header)),
                                      "Content-Type": "application/octet-stream"}


def length_prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def predicted(server, data: bytes, **params) -> dict:
    r = httpx.post(f"{server.url}/predict", files={"image": ("c.jpg", data)}, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def assert_same_detections(tensors: dict, payload: dict) -> None:
    """The v2 tensors say what /predict says for the same image (boxes to /predict's rounding)."""
    dets = payload["detections"]
    assert [n.decode() if isinstance(n, bytes) else n for n in tensors["class_names"]] == \
           [d["class_name"] for d in dets]
    assert list(tensors["classes"]) == [d["class_id"] for d in dets]
    assert np.asarray(tensors["scores"]) == pytest.approx([d["confidence"] for d in dets], abs=1e-5)
    want = [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in dets]
    assert np.asarray(tensors["boxes"]).reshape(-1, 4) == pytest.approx(np.array(want).reshape(-1, 4), abs=0.01)


# -- the official client ----------------------------------------------------------------------------------------
def test_tritonclient_sees_a_live_ready_server_and_the_model(yolox_server):
    http = pytest.importorskip(TRITON)
    client = http.InferenceServerClient(yolox_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.get_server_metadata()["name"] == "spotdet"
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == \
           {"boxes": ("FP32", [-1, 4]), "scores": ("FP32", [-1]), "classes": ("INT64", [-1]),
            "class_names": ("BYTES", [-1])}
    with pytest.raises(http.InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope")


def test_tritonclient_binary_infer_finds_the_cat(yolox_server, jpeg_bytes):
    """tritonclient's own binary encoding (binary_data=True, every output binary): a real cat photo."""
    http = pytest.importorskip(TRITON)
    client = http.InferenceServerClient(yolox_server.url.removeprefix("http://"))
    image = http.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([jpeg_bytes["chelsea"]], dtype=np.object_), binary_data=True)
    result = client.infer(MODEL, [image])
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert all("binary_data_size" in o["parameters"] for o in outputs.values())  # answered in binary, as asked
    tensors = {name: result.as_numpy(name) for name in oip.OUTPUTS}
    assert b"cat" in list(tensors["class_names"])
    assert tensors["boxes"].dtype == np.float32 and tensors["classes"].dtype == np.int64
    boxes = tensors["boxes"]
    assert boxes.shape == (len(tensors["scores"]), 4)
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 2] <= 451).all() and (boxes[:, 3] <= 300).all()
    figures = result.get_response()["parameters"]
    assert (figures["width"], figures["height"], figures["model"]) == (451, 300, MODEL)
    assert figures["total_ms"] >= figures["infer_ms"] > 0 and figures["cost_usd"] > 0
    assert_same_detections(tensors, predicted(yolox_server, jpeg_bytes["chelsea"]))


def test_tritonclient_parameters_and_chosen_outputs(yolox_server, jpeg_bytes):
    """Options ride in the request's parameters; outputs come as asked (JSON or binary, in the order asked)."""
    http = pytest.importorskip(TRITON)
    client = http.InferenceServerClient(yolox_server.url.removeprefix("http://"))
    image = http.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([jpeg_bytes["coffee"]], dtype=np.object_), binary_data=True)
    outputs = [http.InferRequestedOutput("class_names", binary_data=False),
               http.InferRequestedOutput("scores", binary_data=True)]
    result = client.infer(MODEL, [image], outputs=outputs, request_id="req-7",
                          parameters={"conf": 0.5, "classes": "cup,41"})
    response = result.get_response()
    assert response["id"] == "req-7"
    assert [o["name"] for o in response["outputs"]] == ["class_names", "scores"]
    assert "data" in response["outputs"][0] and "binary_data_size" in response["outputs"][1]["parameters"]
    names, scores = result.as_numpy("class_names"), result.as_numpy("scores")
    assert len(names) and set(names.tolist()) == {"cup"} and (scores >= 0.5).all()
    with pytest.raises(http.InferenceServerException, match="unknown class 'unicorn'"):
        client.infer(MODEL, [image], parameters={"classes": "unicorn"})


# -- requests written from the protocol -------------------------------------------------------------------------
def test_json_base64_request_answers_json_tensors_like_predict(yolox_server, jpeg_bytes):
    r = httpx.post(infer_url(yolox_server), json={"id": "a1", "inputs": [image_input(jpeg_bytes["chelsea"])]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    body = r.json()
    schemas.InferResponse.model_validate(body)  # what the spec declares, no key more
    assert body["model_name"] == MODEL and body["id"] == "a1"
    tensors = {o["name"]: o["data"] for o in body["outputs"]}
    shapes = {o["name"]: o["shape"] for o in body["outputs"]}
    n = len(tensors["scores"])
    assert shapes == {"boxes": [n, 4], "scores": [n], "classes": [n], "class_names": [n]}
    assert "cat" in tensors["class_names"]
    assert_same_detections(tensors, predicted(yolox_server, jpeg_bytes["chelsea"]))


def test_uint8_data_array_is_the_image_file(yolox_server, jpeg_bytes):
    data = jpeg_bytes["chelsea"]
    tensor = {"name": "image", "shape": [len(data)], "datatype": "UINT8", "data": list(data)}
    r = httpx.post(infer_url(yolox_server), json={"inputs": [tensor], "parameters": {"classes": ["cat"]}})
    assert r.status_code == 200, r.text
    assert {o["name"]: o["data"] for o in r.json()["outputs"]}["class_names"] == ["cat"]


def test_binary_extension_by_hand_both_ways(yolox_server, jpeg_bytes):
    """The binary section in and out, read and written from the protocol's text (no client library)."""
    request = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                           "parameters": {"binary_data_size": len(jpeg_bytes["astronaut"]) + 4}}],
               "parameters": {"binary_data_output": True}}
    content, headers = binary_request(request, length_prefixed(jpeg_bytes["astronaut"]))
    r = httpx.post(infer_url(yolox_server), content=content, headers=headers)
    assert r.status_code == 200, r.text
    size = int(r.headers["inference-header-content-length"])
    header, rest = json.loads(r.content[:size]), r.content[size:]
    tensors, at = {}, 0
    for output in header["outputs"]:
        blob = rest[at: at + output["parameters"]["binary_data_size"]]
        at += len(blob)
        if output["datatype"] == "BYTES":
            tensors[output["name"]] = oip._split_bytes(blob)
        else:
            dtype = {"FP32": np.float32, "INT64": np.int64}[output["datatype"]]
            tensors[output["name"]] = np.frombuffer(blob, dtype).reshape(output["shape"])
    assert at == len(rest)
    assert b"person" in tensors["class_names"]
    assert_same_detections(tensors, predicted(yolox_server, jpeg_bytes["astronaut"]))


def test_infer_goes_through_the_service_metrics_and_labels(yolox_server, jpeg_bytes):
    before = httpx.get(f"{yolox_server.url}/metrics").text
    assert httpx.post(infer_url(yolox_server), json={"inputs": [image_input(jpeg_bytes["coffee"])]}).status_code == 200
    assert httpx.post(infer_url(yolox_server, "nope"), json={}).status_code == 404
    after = httpx.get(f"{yolox_server.url}/metrics").text
    template = "/v2/models/{name}/infer"
    assert metric(after, "spotdet_requests_total", endpoint=template, status="200") == \
           metric(before, "spotdet_requests_total", endpoint=template, status="200") + 1
    assert metric(after, "spotdet_requests_total", endpoint=template, status="404") == \
           metric(before, "spotdet_requests_total", endpoint=template, status="404") + 1
    assert metric(after, "spotdet_images_total") == metric(before, "spotdet_images_total") + 1  # same batcher
    assert metric(after, "spotdet_busy_seconds_total") > metric(before, "spotdet_busy_seconds_total")


# -- refusals ---------------------------------------------------------------------------------------------------
def assert_v2_error(response, status: int) -> str:
    """The protocol's error object ({"error": ...}), as every spotdet refusal is (plus its status)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status and body["error"]
    return body["error"]


@pytest.mark.parametrize("path", ["", "/ready", "/infer"])
def test_an_unknown_model_is_404_in_the_error_shape(yolox_server, path):
    url = f"{yolox_server.url}/v2/models/resnet50{path}"
    r = httpx.post(url, json={}) if path == "/infer" else httpx.get(url)
    assert assert_v2_error(r, 404) == "unknown model 'resnet50': this server serves 'yolox-nano'"


@pytest.mark.parametrize("case, says", [
    ("not_image", "not a decodable image"), ("bad_base64", "not valid base64"), ("two_images", "one image per"),
    ("bad_parameter", "parameter 'conf' must be a number"), ("bad_conf", "conf must be in [0, 1)"),
    ("not_json", "Invalid JSON"), ("compressed", "compressed"),
])
def test_bad_inference_requests_are_4xx_and_the_server_keeps_serving(yolox_server, jpeg_bytes, case, says):
    good = jpeg_bytes["chelsea"]
    status, headers = 400, {}
    if case == "not_image":
        body = {"inputs": [image_input(b"hello, not an image")]}
    elif case == "bad_base64":
        body = {"inputs": [{**image_input(good), "data": ["%%% not base64 %%%"]}]}
    elif case == "two_images":
        body = {"inputs": [{**image_input(good), "shape": [2], "data": image_input(good)["data"] * 2}]}
    elif case == "bad_parameter":
        body = {"inputs": [image_input(good)], "parameters": {"conf": "high"}}
    elif case == "bad_conf":
        body = {"inputs": [image_input(good)], "parameters": {"conf": 3}}
    elif case == "compressed":
        body, status, headers = {"inputs": [image_input(good)]}, 415, {"Content-Encoding": "gzip"}
    else:
        body = None
    if body is None:
        r = httpx.post(infer_url(yolox_server), content=b"{not json", headers={"Content-Type": "application/json"})
    else:
        r = httpx.post(infer_url(yolox_server), content=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json", **headers})
    assert says in assert_v2_error(r, status)
    ok = httpx.post(infer_url(yolox_server), json={"inputs": [image_input(good)]})
    assert ok.status_code == 200 and "cat" in {o["name"]: o for o in ok.json()["outputs"]}["class_names"]["data"]


def test_an_upload_over_the_limit_is_413(yolox_server, jpeg_bytes):
    big = jpeg_bytes["chelsea"] + b"\0" * (1024 * 1024)  # the server takes 1 MB bodies
    content, headers = binary_request({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                                   "parameters": {"binary_data_size": len(big) + 4}}]},
                                      length_prefixed(big))
    assert "--max-upload-mb" in assert_v2_error(httpx.post(infer_url(yolox_server), content=content,
                                                           headers=headers), 413)


def test_health_is_open_and_the_rest_needs_the_key(start_server, jpeg_bytes):
    server = start_server("--model", "fastestdet", "--api-key", "s3cret")
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(server.url + path).status_code == 200, path
    for path in ("/v2", "/v2/models/fastestdet", "/v2/models/fastestdet/ready"):
        assert "API key" in assert_v2_error(httpx.get(server.url + path), 401), path
    r = httpx.post(f"{server.url}/v2/models/fastestdet/infer", json={"inputs": [image_input(jpeg_bytes["chelsea"])]},
                   headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["model_name"] == "fastestdet"


# -- the parser, without a server -------------------------------------------------------------------------------
def parse(request: dict, *blobs: bytes) -> oip.InferCall:
    if not blobs:
        return oip.parse_infer_request(json.dumps(request).encode(), None)
    content, headers = binary_request(request, *blobs)
    return oip.parse_infer_request(content, headers["Inference-Header-Content-Length"])


def refusal(request: dict, *blobs: bytes) -> str:
    with pytest.raises(UploadError) as caught:
        parse(request, *blobs)
    assert caught.value.status == 400
    return caught.value.message


def test_the_parser_takes_each_encoding_of_the_image():
    image = b"\xff\xd8 some jpeg bytes"
    assert parse({"inputs": [image_input(image)]}).upload.data == image
    nested = {"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": [[base64.b64encode(image).decode()]]}
    assert parse({"inputs": [nested]}).upload.data == image
    binary = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(image) + 4}}
    assert parse({"inputs": [binary]}, length_prefixed(image)).upload.data == image
    raw = {"name": "image", "shape": [len(image)], "datatype": "UINT8", "parameters": {"binary_data_size": len(image)}}
    assert parse({"inputs": [raw]}, image).upload.data == image


def test_the_parser_reads_options_and_outputs():
    call = parse({"inputs": [image_input(b"x")], "parameters": {"conf": 0.4, "classes": ["cat", 0], "imgsz": 320,
                                                                  "tile": False, "priority": 1},
                  "outputs": [{"name": "scores"}, {"name": "boxes", "parameters": {"binary_data": True}}]})
    assert call.overrides == {"conf": 0.4, "classes": ["cat", 0], "imgsz": 320, "tile": False}
    assert call.outputs == [("scores", False), ("boxes", True)]
    everything = parse({"inputs": [image_input(b"x")], "parameters": {"binary_data_output": True}})
    assert everything.outputs == [(name, True) for name in oip.OUTPUTS] and everything.overrides == {}


@pytest.mark.parametrize("request_, says", [
    ({"inputs": []}, "takes one input, 'image'"),
    ({"inputs": [{**image_input(b"x"), "name": "images"}]}, "got 'images'"),
    ({"inputs": [{**image_input(b"x"), "datatype": "FP32"}]}, "must be BYTES"),
    ({"inputs": [{**image_input(b"x"), "shape": [3]}]}, "shape [3] does not hold the 1 element(s)"),
    ({"inputs": [{**image_input(b"x"), "data": [7]}]}, "must be a base64 string"),
    ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES"}]}, "has no data"),
    ({"inputs": [{"name": "image", "shape": [2], "datatype": "UINT8", "data": [1, 256]}]}, "integers 0-255"),
    ({"inputs": [image_input(b"x")], "parameters": {"confidence": 0.5}}, "unknown parameter(s) 'confidence'"),
    ({"inputs": [image_input(b"x")], "parameters": {"tile": 1}}, "'tile' must be true or false"),
    ({"inputs": [image_input(b"x")], "parameters": {"max_det": True}}, "'max_det' must be an integer"),
    ({"inputs": [image_input(b"x")], "outputs": [{"name": "masks"}]}, "unknown output 'masks'"),
    ({"inputs": [image_input(b"x")], "outputs": [{"name": "classes", "parameters": {"classification": 3}}]},
     "classification extension"),
    ({"inputs": "image"}, "inputs: Input should be a valid"),
])
def test_the_parser_refuses_with_the_reason(request_, says):
    assert says in refusal(request_)


def test_the_parser_refuses_a_broken_binary_section():
    image = b"\xff\xd8 jpeg"
    sized = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(image) + 4}}
    assert "4-byte little-endian length" in refusal({"inputs": [sized]}, struct.pack("<I", 999) + image)
    wrong = {**sized, "parameters": {"binary_data_size": 3}}
    assert "does not match" in refusal({"inputs": [wrong]}, length_prefixed(image))
    assert "no input has binary_data_size" in refusal({"inputs": [image_input(image)]}, b"extra")
    with pytest.raises(UploadError, match="Inference-Header-Content-Length must be"):
        oip.parse_infer_request(b"{}", "12345")
