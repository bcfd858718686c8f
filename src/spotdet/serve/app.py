"""The FastAPI application: thin routes over ``DetectionService`` (routes named in ``routes.py``)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from spotdet.serve import routes
from spotdet.serve.config import ServeConfig
from spotdet.serve.console import install_console
from spotdet.serve.errors import install_error_handlers
from spotdet.serve.middleware import install_middleware
from spotdet.serve.routes import Route
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


def detect_query(conf: float | None = None, iou: float | None = None, imgsz: str | None = None,
                 max_det: int | None = None, classes: str | None = None,
                 tile: bool | None = None) -> dict[str, Any]:
    """The query parameters that override the service's detection options (None: keep the default).
    ``imgsz``: N, WxH or auto; ``tile``: true to slice large images into tiles."""
    return {"conf": conf, "iou": iou, "imgsz": imgsz, "max_det": max_det, "classes": classes, "tile": tile}


def create_app(config: ServeConfig) -> FastAPI:
    service = DetectionService(config)

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

    def route(r: Route, **kwargs: Any):
        return app.api_route(r.path, methods=[r.method], summary=r.summary, **kwargs)

    @route(routes.PREDICT, openapi_extra=_IMAGE_BODY)
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

    @route(routes.PREDICT_BATCH, openapi_extra=_BATCH_BODY)
    async def predict_batch(request: Request, overrides: dict = Depends(detect_query)):
        """Send several multipart fields named `images` (or `image`); results come back in order."""
        received = time.perf_counter()
        with service.budget.request() as budget:
            uploads = await read_uploads(request, ("images", "image"), config.max_upload_bytes,
                                         max_files=MAX_BATCH_FILES, budget=budget, timeout=config.body_timeout_s)
            if len(uploads) > MAX_BATCH_FILES:
                raise UploadError(413, f"at most {MAX_BATCH_FILES} images per batch request")
            return service.batch_payload(await service.detect(uploads, overrides, budget), received)

    @route(routes.MODELS)
    async def models():
        return service.host.status()

    @route(routes.HEALTHZ)
    async def healthz():
        return {"status": "alive"}

    @route(routes.READYZ)
    async def readyz():
        ready, body = service.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    @route(routes.METRICS)
    async def metrics():
        service.metrics.queue_depth.set(service.queue_depth())
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _version() -> str:
    from spotdet import __version__

    return __version__
