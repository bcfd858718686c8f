"""The Open Inference Protocol (KServe v2, Triton's HTTP/REST API) beside ``/predict``, for clients such as
``tritonclient.http`` and KServe's.

The served model takes one input, ``image``: the encoded image file (JPEG, PNG, ...), as Triton's image
clients send it: ``BYTES`` (base64 in JSON ``data``, or length-prefixed in the binary section of the binary
tensor extension) or ``UINT8`` (the file's bytes). It answers the detections as tensors: ``boxes`` FP32
[N, 4] (x1, y1, x2, y2 in original image pixels), ``scores`` FP32 [N], ``classes`` INT64 [N] and
``class_names`` BYTES [N], in JSON or, as asked per output or for all (``binary_data`` /
``binary_data_output``), in the binary section.

An inference is the same request as ``/predict``: the body is read under the same limits and memory budget,
the image goes through ``DetectionService.detect`` (queue, batcher, timeout, metrics, cost) and the answer's
figures come from ``DetectionService.payload``, which the response carries as its ``parameters``. Refusals
are ``errors.py``'s body, ``{"error": ..., "status": ...}``: the protocol's error object plus the status.

Binary tensor extension: the body is the JSON request followed by the raw tensors, the JSON's length in the
``Inference-Header-Content-Length`` header, each binary input saying its size in
``parameters.binary_data_size``; a ``BYTES`` tensor's elements are each a 4-byte little-endian length then
the bytes. Not served: model versions, shared memory, the classification extension, compressed bodies, and
more than one image per request (send concurrent requests: the batcher groups them).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from spotdet.results import Result
from spotdet.serve import routes, schemas
from spotdet.serve.errors import describe_problems
from spotdet.serve.service import DetectionService
from spotdet.serve.uploads import Upload, UploadError, read_body

INPUT = "image"
HEADER_LENGTH = "Inference-Header-Content-Length"
# name -> (datatype, shape); -1: one row per detection
OUTPUTS = {"boxes": ("FP32", [-1, 4]), "scores": ("FP32", [-1]), "classes": ("INT64", [-1]),
           "class_names": ("BYTES", [-1])}
# Request parameters that choose detection options (DetectOptions' names, which check the values): the JSON
# types each may have, and how the refusal names them.
OPTION_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "conf": ((int, float), "a number"), "iou": ((int, float), "a number"), "max_det": ((int,), "an integer"),
    "classes": ((str, list), "class names or ids, as a list or comma-separated"),
    "imgsz": ((int, str), "an integer, or text: N, WxH or auto"), "tile": ((bool,), "true or false")}
# The protocol's own request parameters: read (binary_data_output) or accepted and left to the service's
# settings (priority, timeout: the queue and --timeout decide).
PROTOCOL_PARAMETERS = {"binary_data_output", "priority", "timeout"}


@dataclass
class InferCall:
    """What one inference request asks for, checked: the image, the option overrides, the outputs."""

    id: str | None
    upload: Upload
    overrides: dict[str, Any]
    outputs: list[tuple[str, bool]]  # (name, in the binary section), in the order asked


# -- parsing the request --------------------------------------------------------------------------------------
def parse_infer_request(body: bytes, header_length: str | None) -> InferCall:
    """The request from its body (JSON, or JSON then binary tensors when ``header_length`` is given); 400
    with the reason for anything this model cannot take."""
    json_part, binary = _split(body, header_length)
    try:
        request = schemas.InferRequest.model_validate_json(json_part)
    except ValidationError as exc:
        raise UploadError(400, f"invalid inference request: {describe_problems(exc.errors(include_url=False))}")
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT:
        got = ", ".join(repr(i.name) for i in request.inputs) or "none"
        raise UploadError(400, f"this model takes one input, {INPUT!r} (BYTES: the encoded image file); got {got}")
    data = _image_bytes(request.inputs[0], binary)
    parameters = request.parameters or {}
    return InferCall(request.id, Upload(INPUT, data), _overrides(parameters),
                     _outputs(request.outputs, parameters.get("binary_data_output") is True))


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        size = -1
    if not 0 <= size <= len(body):
        raise UploadError(400, f"{HEADER_LENGTH} must be the JSON header's length in bytes, between 0 and the "
                               f"body's {len(body)}; got {header_length!r}")
    return body[:size], body[size:]


def _image_bytes(tensor: schemas.RequestInput, binary: bytes) -> bytes:
    """The encoded image file carried by ``tensor``: its one BYTES element, or its UINT8 elements."""
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise UploadError(400, f"input {INPUT!r}: binary_data_size {size!r} does not match the "
                                   f"{len(binary)} bytes after the JSON header")
        if tensor.data is not None:
            raise UploadError(400, f"input {INPUT!r}: send its data in JSON or in the binary section, not both")
    elif binary:
        raise UploadError(400, f"{len(binary)} bytes after the JSON header, but no input has binary_data_size")
    elif tensor.data is None:
        raise UploadError(400, f"input {INPUT!r} has no data")
    if tensor.datatype == "BYTES":
        elements = _split_bytes(binary) if size is not None else [_from_base64(x) for x in _flat(tensor.data)]
        if len(elements) != 1:
            raise UploadError(400, f"one image per request, got {len(elements)}: send several requests (the "
                                   "server batches concurrent ones)")
        data = elements[0]
        count = 1
    elif tensor.datatype == "UINT8":
        data = binary if size is not None else _uint8(tensor.data)
        count = len(data)
    else:
        raise UploadError(400, f"input {INPUT!r} must be BYTES (the encoded image file) or UINT8 (its bytes), "
                               f"got {tensor.datatype}")
    if int(np.prod(tensor.shape)) != count or any(d < 0 for d in tensor.shape):
        raise UploadError(400, f"input {INPUT!r}: shape {tensor.shape} does not hold the {count} element(s) sent")
    return data


def _flat(data: list[Any]) -> Iterator[Any]:
    for item in data:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


def _from_base64(item: Any) -> bytes:
    """A BYTES element in JSON: the image file, base64-encoded (raw image bytes are not valid JSON text)."""
    if not isinstance(item, str):
        raise UploadError(400, f"input {INPUT!r}: a BYTES element in JSON must be a base64 string, got "
                               f"{type(item).__name__}")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError(400, f"input {INPUT!r}: the BYTES element is not valid base64 (send the image file "
                               "base64-encoded, or in the binary section)") from None


def _split_bytes(binary: bytes) -> list[bytes]:
    """A BYTES tensor in the binary section: each element a 4-byte little-endian length, then its bytes."""
    elements, at = [], 0
    while at < len(binary):
        if at + 4 > len(binary):
            raise UploadError(400, _LENGTH_PREFIX)
        (size,) = struct.unpack_from("<I", binary, at)
        if at + 4 + size > len(binary):
            raise UploadError(400, _LENGTH_PREFIX)
        elements.append(binary[at + 4: at + 4 + size])
        at += 4 + size
    return elements


_LENGTH_PREFIX = (f"input {INPUT!r}: BYTES in the binary section must be elements of a 4-byte little-endian "
                  "length followed by that many bytes (as tritonclient sends them)")


def _uint8(data: list[Any]) -> bytes:
    values = list(_flat(data))
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
        raise UploadError(400, f"input {INPUT!r}: UINT8 data must be integers 0-255 (the image file's bytes)")
    return bytes(values)


def _overrides(parameters: dict[str, Any]) -> dict[str, Any]:
    """Detection options from the request's parameters (DetectOptions checks their values); a name that is
    neither an option nor the protocol's own is refused, so a misspelt option is not silently ignored."""
    unknown = set(parameters) - set(OPTION_TYPES) - PROTOCOL_PARAMETERS
    if unknown:
        raise UploadError(400, f"unknown parameter(s) {', '.join(sorted(map(repr, unknown)))}: detection options "
                               f"are {', '.join(OPTION_TYPES)}")
    overrides = {}
    for name, (types, wanted) in OPTION_TYPES.items():
        value = parameters.get(name)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UploadError(400, f"parameter {name!r} must be {wanted}, got {value!r}")
        overrides[name] = value
    return overrides


def _outputs(requested: list[schemas.RequestOutput] | None, binary_default: bool) -> list[tuple[str, bool]]:
    if requested is None:
        return [(name, binary_default) for name in OUTPUTS]
    chosen = []
    for output in requested:
        if output.name not in OUTPUTS:
            raise UploadError(400, f"unknown output {output.name!r}; this model's outputs are {', '.join(OUTPUTS)}")
        parameters = output.parameters or {}
        if "classification" in parameters:
            raise UploadError(400, "the classification extension is not served: read the class_names output")
        chosen.append((output.name, bool(parameters.get("binary_data", binary_default))))
    return chosen


# -- the response ---------------------------------------------------------------------------------------------
def detection_tensors(result: Result) -> dict[str, np.ndarray | list[bytes]]:
    """The Result's detections as the model's output tensors (full precision: the boxes are not rounded)."""
    boxes = result.boxes
    return {"boxes": np.ascontiguousarray(boxes.xyxy, np.float32).reshape(-1, 4),
            "scores": np.ascontiguousarray(boxes.conf, np.float32),
            "classes": np.ascontiguousarray(boxes.cls, np.int64),
            "class_names": [result.names.get(int(c), str(int(c))).encode() for c in boxes.cls.tolist()]}


def figures(payload: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The service's payload without its detections, as the flat scalars the protocol's parameters hold:
    image size, precision, batch size, cost and every timing (``total_ms``, ``queue_ms``, ...)."""
    flat = {k: v for k, v in payload.items() if isinstance(v, (bool, int, float, str))}
    flat.update(payload.get("timings", {}))
    return flat


def infer_response(model: str, call: InferCall, tensors: dict[str, Any], parameters: dict[str, Any]) -> Response:
    """JSON, or JSON then the binary section when an output is asked in binary."""
    outputs, blobs = [], []
    for name, binary in call.outputs:
        datatype, _ = OUTPUTS[name]
        value = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype,
                                 "shape": [len(value)] if datatype == "BYTES" else list(value.shape)}
        if binary:
            blob = (b"".join(struct.pack("<I", len(v)) + v for v in value) if datatype == "BYTES"
                    else value.tobytes())
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [v.decode() for v in value] if datatype == "BYTES" else value.ravel().tolist()
        outputs.append(entry)
    body = {"model_name": model, **({"id": call.id} if call.id is not None else {}), "parameters": parameters,
            "outputs": outputs}
    if not blobs:
        return JSONResponse(body)
    header = json.dumps(body, separators=(",", ":")).encode()
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


# -- routes ---------------------------------------------------------------------------------------------------
_INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}, "description": (
        f"Binary tensor extension: the JSON request ({HEADER_LENGTH} bytes long, that header says), then "
        "the image input's bytes (parameters.binary_data_size)")},
}}}
_BINARY_ANSWER = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}, "description": (
    f"When an output is asked with binary_data: the JSON response ({HEADER_LENGTH} bytes), then those outputs")}}


def install_oip(app: FastAPI, service: DetectionService) -> None:
    """Register the protocol's routes (named in ``routes.py``) over ``service``."""
    config = service.config

    def model_name(name: str) -> str:
        served = service.host.card.name
        if name != served:
            raise HTTPException(404, f"unknown model {name!r}: this server serves {served!r}")
        return served

    @routes.register(app, routes.V2_SERVER, responses={200: {"model": schemas.ServerMetadata},
                                                       **schemas.error_responses(401)})
    async def server_metadata():
        return {"name": "spotdet", "version": app.version, "extensions": ["binary_tensor_data"]}

    @routes.register(app, routes.V2_LIVE, responses={200: {"model": schemas.ServerLive}})
    async def server_live():
        return {"live": True}

    @routes.register(app, routes.V2_READY, responses={200: {"model": schemas.ServerReady},
                                                      503: {"model": schemas.ServerReady, "description": (
                                                          "Not ready: the model failed to load, or draining")}})
    async def server_ready():
        ready, _ = service.readiness()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @routes.register(app, routes.V2_MODEL, responses={200: {"model": schemas.ModelMetadata},
                                                      **schemas.error_responses(401, 404)})
    async def model_metadata(name: str):
        return {"name": model_name(name), "platform": "spotdet",
                "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [1]}],
                "outputs": [{"name": n, "datatype": d, "shape": s} for n, (d, s) in OUTPUTS.items()]}

    @routes.register(app, routes.V2_MODEL_READY, responses={
        200: {"model": schemas.ModelReady},
        503: {"model": schemas.ModelReady, "description": "Not ready: the model failed to load, or draining"},
        **schemas.error_responses(401, 404)})
    async def model_ready(name: str):
        ready, _ = service.readiness()
        return JSONResponse({"name": model_name(name), "ready": ready}, status_code=200 if ready else 503)

    @routes.register(app, routes.V2_INFER, openapi_extra=_INFER_BODY, responses={
        200: {"model": schemas.InferResponse, "content": _BINARY_ANSWER},
        **schemas.error_responses(400, 401, 404, 408, 413, 415, 500, 503, 504)})
    async def infer(name: str, request: Request):
        """The encoded image as input `image` (BYTES); the detections as tensors `boxes`, `scores`, `classes`
        and `class_names`. Request parameters: conf, iou, max_det, classes, imgsz, tile."""
        model = model_name(name)
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            raise UploadError(415, "compressed request bodies are not served: send the request uncompressed")
        received = time.perf_counter()
        with service.budget.request() as budget:
            body = await read_body(request, config.max_upload_bytes, budget, config.body_timeout_s)
            size = len(body)
            try:
                call = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
            finally:  # as read_uploads does: the body goes, the image's bytes stay counted
                del body
                budget.give(size)
            outcome, = await service.detect([call.upload], call.overrides, budget)
            payload = service.payload(outcome, received)
        return infer_response(model, call, detection_tensors(outcome.result), figures(payload))
