"""The HTTP API's shapes, declared for the OpenAPI spec: what each route answers, the one error body, and the
Open Inference Protocol (KServe v2) request and response objects.

These models document payloads that are built elsewhere (``Result.to_dict`` plus ``DetectionService.payload``,
``ModelHost.status``, ``oip.py``): routes name them in ``responses=`` instead of ``response_model=``, so a
payload is sent as it was built, not rebuilt or filtered on the way out. They forbid undeclared keys, and the
tests validate real responses against them, so a key added to a payload without its declaration here fails
a test instead of drifting silently out of the spec.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ---------------------------------------------------------------------------------------------------
class ErrorBody(_Shape):
    """Every refusal, from every route (FastAPI's own 422 and 404 included): one shape. ``error`` is also
    what the Open Inference Protocol specifies, so v2 clients read it as they read Triton's."""

    error: str = Field(description="What was wrong, in one line")
    status: int = Field(description="The HTTP status, repeated for clients that only keep the body")


# Why each status is given (the table in errors.py, as the spec shows it).
ERROR_MEANINGS = {
    400: "Bad request: not a decodable image, a bad option value, an unknown class, a malformed inference request",
    401: "Missing or wrong API key (when the server has one)",
    404: "Unknown path, or a model name this server does not serve",
    408: "The request body stalled (--body-timeout)",
    413: "Upload, image pixels or request memory over their limits",
    415: "Unsupported content type or content encoding",
    422: "A query or path parameter failed validation (e.g. conf=abc), or a form field was misnamed",
    500: "Internal error, naming only its kind (details are in the server log)",
    503: "Busy (queue or memory budget full) or out of memory: retry after Retry-After seconds; or not ready",
    504: "The request waited longer than --timeout in the queue",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries declaring ``ErrorBody`` for ``statuses``. Declaring 422 also stops FastAPI from
    documenting its own validation-error shape, which the service never sends (errors.py rewrites it)."""
    return {s: {"model": ErrorBody, "description": ERROR_MEANINGS[s]} for s in statuses}


def install_openapi(app: FastAPI) -> None:
    """Finish ``app``'s spec once it is built: declare the bodies routes read by hand, and the one error body.

    - ``HAND_READ_BODIES`` go into the components, for the routes that name them by ``$ref`` in
      ``openapi_extra`` (a body with a binary section, which FastAPI cannot declare from a parameter);
    - every 422 FastAPI documents with its own ``HTTPValidationError`` (a route with parameters that does not
      declare its 422) says ``ErrorBody`` instead, as errors.py answers it, and FastAPI's shapes go.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (*HAND_READ_BODIES, ErrorBody):
                schema = model.model_json_schema(ref_template=_REF + "{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            for operation in (op for ops in spec.get("paths", {}).values() for op in ops.values()):
                responses = operation.get("responses", {})
                if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                    responses["422"] = _error_response(422)
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_REF = "#/components/schemas/"


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_MEANINGS[status],
            "content": {"application/json": {"schema": {"$ref": _REF + "ErrorBody"}}}}


# -- /predict, /predict/batch ---------------------------------------------------------------------------------
class Box(_Shape):
    """Corners in original image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(_Shape):
    class_id: int
    class_name: str
    confidence: float
    box: Box


class Timings(_Shape):
    """Milliseconds per stage; ``total_ms`` is the whole request, queue included."""

    decode_ms: float
    preprocess_ms: float
    infer_ms: float
    postprocess_ms: float
    total_ms: float
    queue_ms: float = Field(description="Time the image waited for a model batch")


class DetectionResult(_Shape):
    """One image's result: ``Result.to_dict()`` plus what only the service knows (precision, cost)."""

    path: str | None = Field(description="The upload's file name, when it had one")
    model: str
    width: int = Field(description="Original image width in pixels")
    height: int = Field(description="Original image height in pixels")
    input_size: list[int] | None = Field(description="(h, w) the network ran at (the first pass)")
    input_sizes: list[list[int]] = Field(description="(h, w) of every network pass: tiles, adaptive passes")
    input_pixels: int = Field(description="Network input pixels spent on the image, all passes counted")
    batch_size: int = Field(description="Images in the model run that produced this result")
    detections: list[Detection]
    timings: Timings
    notes: list[str] = Field(default_factory=list, description="Present when something was adapted, e.g. an "
                                                                "out-of-memory fallback")
    frame: int | None = Field(None, description="The frame index, for results of a video")
    precision: str = Field(description="The model's precision (fp32, fp16, int8, ...)")
    cost_usd: float = Field(description="This image's share of the batch's busy time at --price-per-hour")


class BatchResult(_Shape):
    model: str
    count: int
    results: list[DetectionResult] = Field(description="One result per image, in the order sent")
    cost_usd: float = Field(description="The sum of the results' costs")


# -- service routes -------------------------------------------------------------------------------------------
class OptionsBody(_Shape):
    """The service's detection defaults (``DetectOptions.to_dict``) that a request's parameters override."""

    conf: float
    iou: float
    max_det: int
    classes: list[int | str] | None
    imgsz: int | list[int] | str | None
    tile: bool


class CardSummary(_Shape):
    published_map: float | None
    params_m: float | None
    license: str
    sha256: str | None
    classes: int = Field(description="How many classes the model knows")


class CostSummary(_Shape):
    """Busy cost beside reserved cost (price x uptime) so far (``cost.formula.CostSplit``)."""

    price_per_hour: float
    busy_s: float = Field(description="Seconds the model spent running batches")
    uptime_s: float = Field(description="Seconds the service (and its machine) was up")
    busy_usd: float
    reserved_usd: float
    idle_share: float = Field(description="Fraction of the uptime not spent running batches")


class ModelStatus(_Shape):
    """``GET /models``: the model, its card, where it runs and its load state (``ModelHost.status``)."""

    model: str
    family: str
    tier: str
    precision: str
    input_size: list[int]
    backend: str | None = Field(description="None while the model is not loaded")
    device: str | None
    gpu_memory_mb: float | None = Field(None, description="GPU memory this process uses (NVML: CUDA context + the model's arena); None without a GPU or while cold")
    model_workers: int | None = Field(None, description="Model runs at once in this process (absent under "
                                                         "--ray: see replicas)")
    threads_per_run: int
    state: Literal["cold", "loading", "warm"]
    load_count: int
    unload_count: int
    last_cold_start_s: float | None
    idle_unload_s: float | None
    warm_windows: list[str]
    in_warm_window: bool
    options: OptionsBody
    last_error: str | None
    cost: CostSummary | None = None
    card: CardSummary
    # Under --ray (ray_app.py), the model runs in replicas that Ray Serve scales:
    engine: Literal["ray"] | None = None
    replicas: int | None = Field(None, description="Replicas running now (--ray)")
    replicas_target: int | None = Field(None, description="Replicas Ray Serve is scaling to (--ray)")
    min_replicas: int | None = None
    max_replicas: int | None = None
    deployment_status: str | None = None
    last_replica_load_s: float | None = None


class Liveness(_Shape):
    status: Literal["alive"]


class Readiness(_Shape):
    """``GET /readyz``: 200 when ready, 503 when not (a failed load, or draining); the same body."""

    state: Literal["cold", "loading", "warm"]
    draining: bool
    last_error: str | None
    ready: bool


# -- Open Inference Protocol (KServe v2) ----------------------------------------------------------------------
Parameter = bool | int | float | str


class ServerMetadata(_Shape):
    name: str
    version: str
    extensions: list[str]


class ServerLive(_Shape):
    live: bool


class ServerReady(_Shape):
    ready: bool


class ModelReady(_Shape):
    name: str
    ready: bool


class TensorMetadata(_Shape):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of variable size")


class ModelMetadata(_Shape):
    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    """One input tensor. For the image: ``BYTES`` with the encoded file as base64 in ``data``, or its bytes in
    the binary section (``parameters.binary_data_size``); or ``UINT8`` with the file's bytes."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Parameter] | None = Field(
        None, description="binary_data: true to receive this output in the binary section")


class InferRequest(BaseModel):
    """``POST /v2/models/{name}/infer``. Request ``parameters``: conf, iou, max_det, classes (names or ids,
    a list or comma-separated), imgsz (N, "WxH" or "auto"), tile, and binary_data_output."""

    id: str | None = None
    parameters: dict[str, Parameter | list[int | str]] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Shape):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Parameter] | None = Field(
        None, description="binary_data_size when the data is in the binary section instead of `data`")
    data: list[Any] | None = Field(None, description="The tensor, flattened row-major")


class InferResponse(_Shape):
    """The detections as tensors, plus the service's figures of the request as ``parameters`` (image size,
    timings, cost, precision): the same numbers ``/predict`` answers."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    outputs: list[ResponseOutput]


HAND_READ_BODIES = (InferRequest,)
