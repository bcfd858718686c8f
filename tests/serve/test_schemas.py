"""The OpenAPI spec declares what the server sends: typed 200 bodies, one error body; and real responses from
the real server validate against those declarations, with no key undeclared."""

import base64

import httpx
import pytest
from support.serve import jpeg_bytes, yolox_server  # noqa: F401 (fixtures)

from spotdet.serve import routes, schemas

REF = "#/components/schemas/"
# The console's routes (console.py) declare their own answers: a page, static files and its stats.
NOT_OURS = {routes.CONSOLE.path, routes.CONSOLE_ASSETS.path, routes.STATS.path}


@pytest.fixture(scope="module")
def spec(yolox_server):
    r = httpx.get(f"{yolox_server.url}/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(spec):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if path not in NOT_OURS:
                yield f"{method.upper()} {path}", operation


def test_every_200_is_declared(spec):
    declared = {}
    for name, operation in operations(spec):
        content = operation["responses"]["200"].get("content", {})
        declared[name] = {media: body.get("schema", {}) for media, body in content.items()}
        assert declared[name] and all(declared[name].values()), f"{name}: empty 200 schema {declared[name]}"
    assert declared["POST /predict"]["application/json"] == {"$ref": REF + "DetectionResult"}
    assert declared["POST /predict"]["image/jpeg"]["format"] == "binary"  # annotate=true
    assert declared["POST /predict/batch"]["application/json"] == {"$ref": REF + "BatchResult"}
    assert declared["GET /models"]["application/json"] == {"$ref": REF + "ModelStatus"}
    assert declared["POST /v2/models/{name}/infer"]["application/json"] == {"$ref": REF + "InferResponse"}
    assert declared["GET /metrics"] == {"text/plain": {"type": "string"}}
    result = spec["components"]["schemas"]["DetectionResult"]
    assert set(result["properties"]) >= {"detections", "timings", "input_sizes", "precision", "cost_usd"}


def test_every_refusal_is_the_one_error_body(spec):
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error", "status"]
    refusals = 0
    for name, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and response.get("content", {}).get("application/json"):
                schema = response["content"]["application/json"]["schema"]
                if status != "503" or "ready" not in name.lower():  # readiness answers its own body
                    assert schema == {"$ref": REF + "ErrorBody"}, (name, status, schema)
                    refusals += 1
    assert refusals > 30
    predict = spec["paths"]["/predict"]["post"]["responses"]
    assert {"400", "401", "413", "415", "422", "503", "504"} <= set(predict)
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])


def test_the_v2_request_body_is_declared(spec):
    body = spec["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": REF + "InferRequest"}
    assert "Inference-Header-Content-Length" in body["application/octet-stream"]["description"]
    components = spec["components"]["schemas"]
    assert components["InferRequest"]["properties"]["inputs"]["items"] == {"$ref": REF + "RequestInput"}
    assert "RequestInput" in components


def test_real_answers_validate_against_their_declarations(yolox_server, jpeg_bytes):
    """Each model forbids undeclared keys: a payload that grows a key without its declaration fails here."""
    url = yolox_server.url
    image = jpeg_bytes["chelsea"]
    one = httpx.post(f"{url}/predict", files={"image": ("c.jpg", image)}).json()
    assert schemas.DetectionResult.model_validate(one).detections
    batch = httpx.post(f"{url}/predict/batch", files=[("images", ("a.jpg", image)), ("images", ("b.jpg", image))])
    assert schemas.BatchResult.model_validate(batch.json()).count == 2
    assert schemas.ModelStatus.model_validate(httpx.get(f"{url}/models").json()).state == "warm"
    schemas.Liveness.model_validate(httpx.get(f"{url}/healthz").json())
    schemas.Readiness.model_validate(httpx.get(f"{url}/readyz").json())
    schemas.ServerMetadata.model_validate(httpx.get(f"{url}/v2").json())
    schemas.ServerLive.model_validate(httpx.get(f"{url}/v2/health/live").json())
    schemas.ServerReady.model_validate(httpx.get(f"{url}/v2/health/ready").json())
    schemas.ModelReady.model_validate(httpx.get(f"{url}/v2/models/yolox-nano/ready").json())
    schemas.ModelMetadata.model_validate(httpx.get(f"{url}/v2/models/yolox-nano").json())
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}
    answer = httpx.post(f"{url}/v2/models/yolox-nano/infer", json={"inputs": [tensor]}).json()
    assert schemas.InferResponse.model_validate(answer).outputs
    for refused in (httpx.post(f"{url}/predict?conf=abc", files={"image": ("c.jpg", image)}),
                    httpx.get(f"{url}/no/such/path"), httpx.get(f"{url}/v2/models/nope")):
        schemas.ErrorBody.model_validate(refused.json())


def test_a_key_the_declaration_lacks_is_caught():
    """What the test above relies on: an undeclared key fails validation instead of passing silently."""
    with pytest.raises(ValueError, match="extra"):
        schemas.ErrorBody.model_validate({"error": "x", "status": 400, "detail": "y"})
