"""The one HTTP middleware: the API key check (routes not open in the route table) and request metrics.

Requests refused for a missing key are counted too, under their route's label.
"""

from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, Request

from spotdet.serve.errors import error_response
from spotdet.serve.metrics import ServiceMetrics
from spotdet.serve.routes import OPEN_PATHS, metric_label

UNAUTHORIZED = "missing or wrong API key (send X-API-Key or Authorization: Bearer)"


def install_middleware(app: FastAPI, api_key: str | None, metrics: ServiceMetrics) -> None:
    @app.middleware("http")
    async def auth_and_metrics(request: Request, call_next):
        path = request.url.path
        start = time.perf_counter()
        if api_key and path not in OPEN_PATHS and not authorized(request, api_key):
            response = error_response(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        endpoint = metric_label(path)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response


def authorized(request: Request, key: str) -> bool:
    """Whether the request carries ``key`` as ``X-API-Key`` or ``Authorization: Bearer`` (constant-time)."""
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())
