"""The FastAPI application: thin routes over ``DetectionService`` (routes named in ``routes.py``)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from spotdet.serve import routes, schemas
from spotdet.serve.config import ServeConfig
from spotdet.serve.console import install_console
from spotdet.serve.errors import install_error_handlers
from spotdet.serve.middleware import install_middleware
from spotdet.serve.oip import install_oip
from spotdet.serve.routes import Route
from spotdet.serve.schemas import error_responses
from spotdet.serve.service import DetectionService
from spotdet.serve.uploads import UploadError, read_uploads

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

# What /predict answers: the result as JSON, or the annotated image with annotate=true; and its refusals.
_DETECTION_ANSWER = {200: {"model": schemas.DetectionResult, "description": "The detections (JSON), or the "
                           "annotated JPEG with annotate=true",
                           "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}
_DETECTION_ERRORS = error_responses(400, 401, 408, 413, 415, 422, 500, 503, 504)


def detect_query(conf: float | None = None, iou: float | None = None, imgsz: str | None = None,
                 max_det: int | None = None, classes: str | None = None,
                 tile: bool | None = None) -> dict[str, Any]:
    """The query parameters that override the service's detection options (None: keep the default).
    ``imgsz``: N, WxH or auto; ``tile``: true to slice large images into tiles."""
    return {"conf": conf, "iou": iou, "imgsz": imgsz, "max_det": max_det, "classes": classes, "tile": tile}


def create_app(config: ServeConfig, service: DetectionService | None = None) -> FastAPI:
    """The app over ``service`` (default: a single-process DetectionService for ``config``; the Ray Serve
    ingress passes one whose model runs in autoscaled replicas — same routes, limits and errors)."""
    service = service or DetectionService(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="spotdet", version=_version(), lifespan=lifespan,
                  docs_url=routes.DOCS.path, openapi_url=routes.OPENAPI.path,
                  description="On-demand object detection with request batching, scale-to-zero and cost per "
                              "request.")
    app.state.service = service
    install_middleware(app, config.api_key, service.metrics)
    install_error_handlers(app)
    install_console(app, service)
    install_oip(app, service)

    def route(r: Route, **kwargs: Any):
        return routes.register(app, r, **kwargs)

    @route(routes.PREDICT, openapi_extra=_IMAGE_BODY, responses={**_DETECTION_ANSWER, **_DETECTION_ERRORS})
    async def predict(request: Request, overrides: dict = Depends(detect_query), annotate: bool = False):
        """Send the image as multipart field `image` or as the raw body with an image content type.
        Returns detections as JSON, or the annotated JPEG with `annotate=true`."""
        received = time.perf_counter()
        with service.budget.request() as budget:  # the request's memory, given back when it answers
            uploads = await read_uploads(request, ("image",), config.max_upload_bytes, max_files=1,
                                         budget=budget, timeout=config.body_timeout_s)
            if len(uploads) != 1:
                raise UploadError(400, f"/predict takes one image, got {len(uploads)}; use /predict/batch")
            outcome, = await service.detect(uploads, overrides, budget, keep_image=annotate)
            if annotate:
                return Response(await run_in_threadpool(service.annotated_jpeg, outcome), media_type="image/jpeg")
            return service.payload(outcome, received)

    @route(routes.PREDICT_BATCH, openapi_extra=_BATCH_BODY,
           responses={200: {"model": schemas.BatchResult}, **_DETECTION_ERRORS})
    async def predict_batch(request: Request, overrides: dict = Depends(detect_query)):
        """Send several multipart fields named `images` (or `image`); results come back in order."""
        received = time.perf_counter()
        with service.budget.request() as budget:
            uploads = await read_uploads(request, ("images", "image"), config.max_upload_bytes,
                                         max_files=MAX_BATCH_FILES, budget=budget, timeout=config.body_timeout_s)
            if len(uploads) > MAX_BATCH_FILES:
                raise UploadError(413, f"at most {MAX_BATCH_FILES} images per batch request")
            return service.batch_payload(await service.detect(uploads, overrides, budget), received)

    @route(routes.MODELS, responses={200: {"model": schemas.ModelStatus}, **error_responses(401)})
    async def models():
        return service.host.status()

    @route(routes.HEALTHZ, responses={200: {"model": schemas.Liveness}})
    async def healthz():
        return {"status": "alive"}

    @route(routes.READYZ, responses={200: {"model": schemas.Readiness},
                                     503: {"model": schemas.Readiness, "description": "Not ready: the model "
                                                                                      "failed to load, or draining"}})
    async def readyz():
        ready, body = service.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    @route(routes.METRICS, response_class=Response, responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format"}, **error_responses(401)})
    async def metrics():
        service.metrics.queue_depth.set(service.queue_depth())
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    schemas.install_openapi(app)
    return app


def _version() -> str:
    from spotdet import __version__

    return __version__
