"""The API key (open routes stay open, keys never logged), the request metrics, refusals included, and the
headers that tell browsers how to treat each answer."""

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


def test_the_console_gets_a_strict_browser_policy_and_every_answer_nosniff():
    """Reliability round 3: the console (the page that holds the API key a user types) was sent without a
    Content-Security-Policy or X-Frame-Options, and no answer said nosniff."""
    config = ServeConfig(model="fastestdet", api_key="k", preload=False)
    with served(config, follow_redirects=False) as (client, service):
        console = [client.get(path) for path in ("/", "/console/console.js", "/console/console.css", "/console")]
        for answer in console:
            policy = answer.headers.get("content-security-policy", "")
            directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
            assert directives.get("default-src") == ["'self'"], (answer.url, policy)
            assert directives.get("frame-ancestors") == ["'none'"] and directives.get("object-src") == ["'none'"]
            assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy and "*" not in policy
            assert answer.headers.get("x-frame-options") == "DENY", answer.url
            assert answer.headers.get("x-content-type-options") == "nosniff", answer.url
        assert console[0].headers["content-type"].startswith("text/html")
        key = {"X-API-Key": "k"}
        api = [client.get("/stats", headers=key), client.get("/stats"), client.get("/healthz"),
               client.post("/predict", headers=key), client.get("/no/such", headers=key)]
        assert [a.status_code for a in api] == [200, 401, 200, 400, 404]
        for answer in api:
            assert answer.headers.get("x-content-type-options") == "nosniff", answer.url
            assert "content-security-policy" not in answer.headers  # a policy for pages, not for JSON
        # FastAPI's /docs page loads Swagger UI from its CDN with an inline script: the console's policy
        # would blank it, so it keeps only nosniff.
        docs = client.get("/docs")
        assert docs.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in docs.headers
