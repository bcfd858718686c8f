"""The FastAPI application: /predict, /predict/batch, /models, /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Any

import cv2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from spotdet.errors import ResourceExhaustedError, SpotdetError
from spotdet.options import parse_classes
from spotdet.serve.batcher import BatchOutcome, Batcher, QueueFullError
from spotdet.serve.config import ServeConfig
from spotdet.serve.host import ModelHost
from spotdet.serve.metrics import ServiceMetrics
from spotdet.serve.uploads import UploadError, decode_upload, read_uploads

log = logging.getLogger(__name__)

OPEN_PATHS = {"/healthz", "/readyz", "/docs", "/openapi.json"}
WATCHDOG_INTERVAL_S = 0.25
MAX_BATCH_FILES = 64

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                               "properties": {"image": {"type": "string", "format": "binary"}}}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["images"],
            "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}},
    }
}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def create_app(config: ServeConfig) -> FastAPI:
    metrics = ServiceMetrics()
    host = ModelHost(config, metrics)
    state: dict[str, Any] = {"draining": False}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = Batcher(host, metrics, config.max_batch, config.max_wait_ms, config.queue_size,
                          config.price_per_hour, host.workers)
        app.state.batcher = batcher
        batcher.start()
        if config.preload:
            await asyncio.get_running_loop().run_in_executor(batcher.model_thread, host.detector)
        watchdog = asyncio.create_task(_watchdog(host, batcher))
        sampler = _start_sampler(config)
        try:
            yield
        finally:
            state["draining"] = True
            watchdog.cancel()
            await batcher.stop()
            if sampler is not None:
                sampler.stop()

    app = FastAPI(title="spotdet", version=_version(), lifespan=lifespan,
                  description="On-demand object detection with request batching, scale-to-zero and cost per "
                              "request.")
    app.state.host = host
    app.state.metrics = metrics
    app.state.config = config

    @app.middleware("http")
    async def auth_and_metrics(request: Request, call_next):
        path = request.url.path
        start = time.perf_counter()
        if config.api_key and path not in OPEN_PATHS and not _authorized(request, config.api_key):
            response = error(401, "missing or wrong API key (send X-API-Key or Authorization: Bearer)",
                             {"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        endpoint = path if path in _ENDPOINTS else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        return error(exc.status, exc.message)

    @app.exception_handler(SpotdetError)
    async def spotdet_error(request: Request, exc: SpotdetError):
        if isinstance(exc, ResourceExhaustedError):
            return error(503, str(exc), {"Retry-After": "5"})
        return error(400 if exc.exit_code == 2 else 500, str(exc))

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, exc: QueueFullError):
        return error(503, "server busy: request queue is full, retry shortly", {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    @app.post("/predict", openapi_extra=_IMAGE_BODY, summary="Detect objects in one image")
    async def predict(request: Request, conf: float | None = None, iou: float | None = None,
                      imgsz: int | None = None, max_det: int | None = None, classes: str | None = None,
                      annotate: bool = False):
        """Send the image as multipart field `image` or as the raw body with an image content type.
        Returns detections as JSON, or the annotated JPEG with `annotate=true`."""
        received = time.perf_counter()
        uploads = await read_uploads(request, ("image",), config.max_upload_bytes, max_files=1)
        if len(uploads) != 1:
            raise UploadError(400, f"/predict takes one image, got {len(uploads)}; use /predict/batch")
        outcomes = await _detect(request.app, uploads, conf, iou, imgsz, max_det, classes, annotate, received)
        if annotate:
            ok, buf = cv2.imencode(".jpg", outcomes[0].result.plot())
            return Response(buf.tobytes(), media_type="image/jpeg")
        return _payload(host, outcomes[0], received)

    @app.post("/predict/batch", openapi_extra=_BATCH_BODY, summary="Detect objects in several images")
    async def predict_batch(request: Request, conf: float | None = None, iou: float | None = None,
                            imgsz: int | None = None, max_det: int | None = None, classes: str | None = None):
        """Send several multipart fields named `images` (or `image`); results come back in order."""
        received = time.perf_counter()
        uploads = await read_uploads(request, ("images", "image"), config.max_upload_bytes,
                                     max_files=MAX_BATCH_FILES)
        if len(uploads) > MAX_BATCH_FILES:
            raise UploadError(413, f"at most {MAX_BATCH_FILES} images per batch request")
        outcomes = await _detect(request.app, uploads, conf, iou, imgsz, max_det, classes, False, received)
        items = [_payload(host, o, received) for o in outcomes]
        return {"model": host.card.name, "count": len(items), "results": items,
                "cost_usd": sum(i["cost_usd"] for i in items)}

    @app.get("/models", summary="The loaded model, its card, device and state")
    async def models():
        return host.describe()

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness: requests can be served now")
    async def readyz():
        body = {"state": host.state, "draining": state["draining"], "last_error": host.last_error}
        if state["draining"]:
            return JSONResponse({**body, "ready": False}, status_code=503)
        # A cold model is ready too: the next request loads it (scale to zero). A failed load is not.
        ready = host.state == "warm" or host.last_error is None
        return JSONResponse({**body, "ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        metrics.queue_depth.set(request_queue_depth(app))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


_ENDPOINTS = {"/predict", "/predict/batch", "/models", "/healthz", "/readyz", "/metrics"}


def request_queue_depth(app: FastAPI) -> int:
    batcher = getattr(app.state, "batcher", None)
    return batcher.queue.qsize() if batcher else 0


async def _detect(app: FastAPI, uploads, conf, iou, imgsz, max_det, classes, annotate, received):
    """Decode (thread pool), make sure the model is loaded, prepare, then queue for the batcher."""
    host: ModelHost = app.state.host
    config: ServeConfig = app.state.config
    batcher: Batcher = app.state.batcher
    host.acquire()
    try:
        loop = asyncio.get_running_loop()
        detector = host.loaded or await loop.run_in_executor(batcher.model_thread, host.detector)
        options = detector.options_for(conf=conf, iou=iou, max_det=max_det, classes=parse_classes(classes),
                                       imgsz=imgsz)
        options.class_ids(detector.names)  # an unknown class is a 400 before any decoding work
        size = detector.input_size(options.imgsz)

        def decode_and_prepare():  # one thread-pool hop per request; OpenCV releases the GIL
            return [detector.prepare(decode_upload(u, config.max_pixels), size, keep_image=annotate) for u in uploads]

        prepared = await run_in_threadpool(decode_and_prepare)
        try:
            outcomes = await asyncio.wait_for(batcher.submit(prepared, options), config.request_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            raise UploadError(504, f"request timed out after {config.request_timeout_s:g} s in the queue") from None
        return outcomes
    finally:
        host.release()


def _payload(host: ModelHost, outcome: BatchOutcome, received: float) -> dict[str, Any]:
    """The Result's own dict plus what only the service knows: precision, time queued, request time, cost."""
    body = outcome.result.to_dict()
    body["precision"] = host.card.precision
    timings = body["timings"]
    timings["queue_ms"] = round(outcome.queue_ms, 3)
    timings["total_ms"] = round((time.perf_counter() - received) * 1000.0, 3)  # the whole request
    body["batch_size"] = outcome.batch_size
    body["cost_usd"] = outcome.cost_usd
    return body


def _authorized(request: Request, key: str) -> bool:
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


async def _watchdog(host: ModelHost, batcher: Batcher) -> None:
    """Apply the idle/warm-window policy a few times a second, on the model thread."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(WATCHDOG_INTERVAL_S)
        if batcher.queue.empty():
            try:
                await loop.run_in_executor(batcher.model_thread, host.tick)
            except Exception:  # never let the policy loop die
                log.exception("watchdog tick failed")


def _start_sampler(config: ServeConfig):
    if not config.monitor_db:
        return None
    import os

    from spotdet.cost.utilization import Sampler  # the same samples `spotdet monitor` records

    return Sampler(config.monitor_db, pid=os.getpid()).start()


def _version() -> str:
    from spotdet import __version__

    return __version__
