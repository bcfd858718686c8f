"""The one HTTP middleware: the API key check (routes not open in the route table), request metrics and the
headers that tell browsers how to treat each answer.

Every request is counted under its route's label with the status it was answered: refusals for a missing
key, a client that went away mid-upload (499) and an unexpected error (500) included. A plain ASGI
middleware: the body reaches the routes as uvicorn delivers it (no extra task per chunk).

Every answer carries ``X-Content-Type-Options: nosniff`` (a browser takes a JSON error or an uploaded
image's detections for what they say they are, never for HTML or script). The console's page and files
also carry a Content-Security-Policy (``CONSOLE_POLICY``) and ``X-Frame-Options: DENY``: the page holds the
API key a user types, so nothing but its own files may run in it and no other site may frame it.
"""

from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spotdet.serve.errors import error_response
from spotdet.serve.metrics import ServiceMetrics
from spotdet.serve.routes import is_console, is_open, metric_label

UNAUTHORIZED = "missing or wrong API key (send X-API-Key or Authorization: Bearer)"
# What the console (web/) needs and nothing more: its own script, stylesheet, API calls and images; its empty
# favicon is a data: URL. No inline script or style (its colours are set through the CSSOM, which the policy
# allows), no plugins, no <base>, forms posting only back to the service, and no framing.
CONSOLE_POLICY = "; ".join((
    "default-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
EVERY_ANSWER = ((b"x-content-type-options", b"nosniff"),)
CONSOLE_ANSWER = EVERY_ANSWER + ((b"content-security-policy", CONSOLE_POLICY.encode()),
                                 (b"x-frame-options", b"DENY"))


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
                message = with_headers(message, CONSOLE_ANSWER if is_console(path) else EVERY_ANSWER)
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


def with_headers(start: Message, headers: tuple[tuple[bytes, bytes], ...]) -> Message:
    """The ``http.response.start`` message with ``headers`` added, each unless the route set it already."""
    present = {name.lower() for name, _ in start.get("headers", ())}
    added = [(name, value) for name, value in headers if name not in present]
    return {**start, "headers": [*start.get("headers", ()), *added]}


def authorized(request: Request, key: str) -> bool:
    """Whether the request carries ``key`` as ``X-API-Key`` or ``Authorization: Bearer`` (constant-time)."""
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())
