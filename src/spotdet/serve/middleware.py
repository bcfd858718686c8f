"""The one HTTP middleware: the API key check (routes not open in the route table) and request metrics.

Every request is counted under its route's label with the status it was answered: refusals for a missing
key, a client that went away mid-upload (499) and an unexpected error (500) included. A plain ASGI
middleware: the body reaches the routes as uvicorn delivers it (no extra task per chunk).
"""

from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spotdet.serve.errors import error_response
from spotdet.serve.metrics import ServiceMetrics
from spotdet.serve.routes import is_open, metric_label

UNAUTHORIZED = "missing or wrong API key (send X-API-Key or Authorization: Bearer)"


class AuthAndMetrics:
    def __init__(self, app: ASGIApp, api_key: str | None, metrics: ServiceMetrics) -> None:
        self.app = app
        self.api_key = api_key
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.api_key and not is_open(path) and not authorized(Request(scope), self.api_key):
                response = error_response(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            endpoint = metric_label(path)
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def install_middleware(app: FastAPI, api_key: str | None, metrics: ServiceMetrics) -> None:
    app.add_middleware(AuthAndMetrics, api_key=api_key, metrics=metrics)


def authorized(request: Request, key: str) -> bool:
    """Whether the request carries ``key`` as ``X-API-Key`` or ``Authorization: Bearer`` (constant-time)."""
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())
