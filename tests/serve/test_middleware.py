"""The API key (open routes stay open, keys never logged) and the request metrics, refusals included."""

import httpx
from support.serve import jpeg_bytes, served, start_server  # noqa: F401 (fixtures)

from spotdet.serve.config import ServeConfig


def test_api_key(start_server, jpeg_bytes):
    server = start_server("--model", "fastestdet", env={"SPOTDET_API_KEY": "s3cret-key"})
    url = f"{server.url}/predict"
    files = {"image": ("c.jpg", jpeg_bytes["coffee"])}
    refused = httpx.post(url, files=files)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == {"error": "missing or wrong API key (send X-API-Key or Authorization: Bearer)",
                              "status": 401}
    assert httpx.post(url, files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.post(url, files=files, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{server.url}/models").status_code == 401
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.post(url, files=files, headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert httpx.post(url, files=files, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert httpx.get(f"{server.url}{open_path}").status_code == 200, open_path
    assert "s3cret-key" not in server.output()


def test_every_request_is_counted_under_its_route_or_other(jpeg_bytes):
    config = ServeConfig(model="fastestdet", api_key="k", model_workers=1)
    with served(config) as (client, service):
        client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["coffee"])})  # 401: no key
        client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["coffee"])}, headers={"X-API-Key": "k"})
        client.get("/healthz")
        client.get("/no/such/path", headers={"X-API-Key": "k"})
        client.get("/openapi.json")

        def count(endpoint, status):
            value = service.metrics.registry.get_sample_value(
                "spotdet_requests_total", {"endpoint": endpoint, "status": status})
            return value or 0

        assert [count("/predict", "401"), count("/predict", "200"), count("/healthz", "200"),
                count("other", "404"), count("other", "200")] == [1, 1, 1, 1, 1]
        assert service.metrics.registry.get_sample_value("spotdet_request_latency_seconds_count",
                                                         {"endpoint": "/predict"}) == 2
