"""Errors as HTTP answers: every refusal is a JSON body ``{"error": message, "status": code}``.

One shape from every route, the framework's own refusals included (``schemas.ErrorBody`` declares it in the
OpenAPI spec). It is also the Open Inference Protocol's error object (``{"error": ...}``, one more key), so
Triton/KServe clients read spotdet's refusals as they read Triton's.

Which exception gives which status (and ``Retry-After`` when retrying helps):

- ``UploadError``: its own status (400 bad image, 408 body stalled, 413 too large, 415 content type,
  422 field name); ``ClientDisconnectedError`` is 499 (nobody reads it), logged as one line
- ``RequestValidationError`` (FastAPI's own check of the query, e.g. ``conf=abc``): 422
- ``HTTPException`` (Starlette's and FastAPI's own: an unknown path 404, a wrong method 405 with its ``Allow``
  header; ``oip.py``'s unknown model 404): its status, its headers kept
- ``RequestTooLargeError``: 413 (more memory than ``--max-request-mb``)
- ``BudgetFullError``: 503, ``Retry-After: 1`` (``--max-inflight-mb`` taken by requests in flight)
- ``QueueFullError``: 503, ``Retry-After: 1``
- ``RequestTimeoutError``: 504
- ``ResourceExhaustedError`` (out of memory after every fallback): 503, ``Retry-After: 5``
- any other ``SpotdetError``: 400 for a usage mistake (unknown class, bad option); 500 otherwise, naming only
  the kind of failure (a failed model load says so); the message, which may hold server paths, is logged
- anything else: 500 naming only its type, logged with its traceback
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from spotdet.errors import ResourceExhaustedError, SpotdetError
from spotdet.serve.batcher import QueueFullError
from spotdet.serve.budget import RETRY_AFTER_S, BudgetFullError, RequestTooLargeError
from spotdet.serve.host import ModelLoadError
from spotdet.serve.uploads import ClientDisconnectedError, UploadError

log = logging.getLogger(__name__)


class RequestTimeoutError(Exception):
    """A request waited longer than ``--timeout`` for its images to be run."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request timed out after {seconds:g} s in the queue")
        self.seconds = seconds


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
    if isinstance(exc, ClientDisconnectedError):
        log.info("%s %s: client disconnected after %d bytes of the body", request.method, request.url.path,
                 exc.received)
    return error_response(exc.status, exc.message, exc.headers)


def _where(loc: tuple) -> str:
    if len(loc) >= 2 and loc[0] in ("query", "path", "header"):
        return f"{loc[0]} parameter {loc[1]!r}"
    return ".".join(str(part) for part in loc) or "request"


def describe_problems(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's validation errors as one line: where, what, and the value given (FastAPI's query checks and
    ``oip.py``'s check of an inference request both say it this way)."""
    problems = []
    for error in errors:
        text = f"{_where(tuple(error.get('loc', ())))}: {error.get('msg', 'invalid')}"
        if "input" in error and isinstance(error["input"], (str, int, float)):
            text += f" (got {str(error['input'])[:100]!r})"
        problems.append(text)
    return "; ".join(problems) or "invalid request"


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, describe_problems(exc.errors()))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _too_large(request: Request, exc: RequestTooLargeError) -> JSONResponse:
    return error_response(413, str(exc))


async def _budget_full(request: Request, exc: BudgetFullError) -> JSONResponse:
    return error_response(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})


async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
    return error_response(503, "server busy: request queue is full, retry shortly", {"Retry-After": "1"})


async def _timeout(request: Request, exc: RequestTimeoutError) -> JSONResponse:
    return error_response(504, str(exc))


async def _spotdet_error(request: Request, exc: SpotdetError) -> JSONResponse:
    if isinstance(exc, ResourceExhaustedError):
        return error_response(503, str(exc), {"Retry-After": "5"})
    if exc.exit_code == 2:
        return error_response(400, str(exc))
    if isinstance(exc, ModelLoadError):  # its message is written for clients; the cause was logged
        return error_response(500, str(exc))
    log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
    return error_response(500, f"internal error: {type(exc).__name__}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(UploadError, _upload_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestTooLargeError, _too_large)
    app.add_exception_handler(BudgetFullError, _budget_full)
    app.add_exception_handler(QueueFullError, _queue_full)
    app.add_exception_handler(RequestTimeoutError, _timeout)
    app.add_exception_handler(SpotdetError, _spotdet_error)
    app.add_exception_handler(Exception, _unexpected)
