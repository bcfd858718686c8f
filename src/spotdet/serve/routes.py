"""The service's routes, named once: method, path, summary, whether they are open without the API key, and
whether they get their own ``endpoint`` label in the request metrics.

``app.py`` registers its handlers from this table, the middleware reads it for auth and metric labels, and
FastAPI's own pages (the docs and the spec) take their paths from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OTHER = "other"  # the metric label of every path not in the table (404s, FastAPI's extra pages)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    open: bool = False  # served without the API key
    labelled: bool = True  # its own `endpoint` label in spotdet_requests_total; False counts as "other"


PREDICT = Route("POST", "/predict", "Detect objects in one image")
PREDICT_BATCH = Route("POST", "/predict/batch", "Detect objects in several images")
MODELS = Route("GET", "/models", "The loaded model, its card, device and state")
HEALTHZ = Route("GET", "/healthz", "Liveness: the process answers", open=True)
READYZ = Route("GET", "/readyz", "Readiness: requests can be served now", open=True)
METRICS = Route("GET", "/metrics", "Prometheus metrics")
# The web console (console.py): the page and its files are open (the page asks for the key and sends it with
# every API call it makes); the stats it polls need the key like every other API route.
CONSOLE = Route("GET", "/", "The web console: try the model, watch the service", open=True)
CONSOLE_ASSETS = Route("GET", "/console", "The console's static files (under this prefix)", open=True,
                       labelled=False)
STATS = Route("GET", "/stats", "Live service statistics as JSON (what the console's dashboard draws)")
# The Open Inference Protocol (KServe v2 / Triton HTTP, oip.py). Its health probes are open like /healthz
# and /readyz; a path with {name} is labelled in the metrics by its template, whatever the name sent.
V2_SERVER = Route("GET", "/v2", "Open Inference Protocol: server metadata")
V2_LIVE = Route("GET", "/v2/health/live", "Open Inference Protocol: the server is live", open=True)
V2_READY = Route("GET", "/v2/health/ready", "Open Inference Protocol: the server is ready", open=True)
V2_MODEL = Route("GET", "/v2/models/{name}", "Open Inference Protocol: model metadata (inputs, outputs)")
V2_MODEL_READY = Route("GET", "/v2/models/{name}/ready", "Open Inference Protocol: the model is ready")
V2_INFER = Route("POST", "/v2/models/{name}/infer", "Open Inference Protocol: detect objects in one image")
# Served by FastAPI itself.
DOCS = Route("GET", "/docs", "Interactive API documentation", open=True, labelled=False)
OPENAPI = Route("GET", "/openapi.json", "The OpenAPI spec", open=True, labelled=False)

ROUTES = (PREDICT, PREDICT_BATCH, MODELS, HEALTHZ, READYZ, METRICS, CONSOLE, CONSOLE_ASSETS, STATS,
          V2_SERVER, V2_LIVE, V2_READY, V2_MODEL, V2_MODEL_READY, V2_INFER, DOCS, OPENAPI)
OPEN_PATHS = frozenset(r.path for r in ROUTES if r.open)
OPEN_PREFIXES = (CONSOLE_ASSETS.path + "/",)  # everything under these is open too


def register(app, route: Route, **options):
    """``app``'s decorator for the handler of ``route``: its method, path and summary from this table."""
    return app.api_route(route.path, methods=[route.method], summary=route.summary, **options)


def is_open(path: str) -> bool:
    """Whether ``path`` is served without the API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def is_console(path: str) -> bool:
    """Whether ``path`` is the console's page or one of its files (they get the console's browser policy)."""
    return path in (CONSOLE.path, CONSOLE_ASSETS.path) or path.startswith(CONSOLE_ASSETS.path + "/")


_LABELS = {r.path: r.path for r in ROUTES if r.labelled and "{" not in r.path}
# Paths with parameters, as patterns: a parameter is one path segment.
_TEMPLATES = tuple((re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(r.path)) + "$"), r.path)
                   for r in ROUTES if r.labelled and "{" in r.path)


def metric_label(path: str) -> str:
    """The ``endpoint`` label of a request path: the route's path (its template, for a path with parameters,
    so the label set stays bounded whatever names clients send), or "other"."""
    label = _LABELS.get(path)
    if label is not None:
        return label
    return next((template for pattern, template in _TEMPLATES if pattern.match(path)), OTHER)
