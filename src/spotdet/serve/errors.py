"""Errors as HTTP answers: every refusal is a JSON body ``{"error": message, "status": code}``.

Which exception gives which status (and ``Retry-After`` when retrying helps):

- ``UploadError``: its own status (400 bad image, 413 too large, 415 content type, 422 field name)
- ``QueueFullError``: 503, ``Retry-After: 1``
- ``RequestTimeoutError``: 504
- ``ResourceExhaustedError`` (out of memory after every fallback): 503, ``Retry-After: 5``
- any other ``SpotdetError``: 400 for a usage mistake (unknown class, bad option), 500 otherwise
- anything else: 500, logged
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from spotdet.errors import ResourceExhaustedError, SpotdetError
from spotdet.serve.batcher import QueueFullError
from spotdet.serve.uploads import UploadError

log = logging.getLogger(__name__)


class RequestTimeoutError(Exception):
    """A request waited longer than ``--timeout`` for its images to be run."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request timed out after {seconds:g} s in the queue")
        self.seconds = seconds


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
    return error_response(exc.status, exc.message)


async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
    return error_response(503, "server busy: request queue is full, retry shortly", {"Retry-After": "1"})


async def _timeout(request: Request, exc: RequestTimeoutError) -> JSONResponse:
    return error_response(504, str(exc))


async def _spotdet_error(request: Request, exc: SpotdetError) -> JSONResponse:
    if isinstance(exc, ResourceExhaustedError):
        return error_response(503, str(exc), {"Retry-After": "5"})
    return error_response(400 if exc.exit_code == 2 else 500, str(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(UploadError, _upload_error)
    app.add_exception_handler(QueueFullError, _queue_full)
    app.add_exception_handler(RequestTimeoutError, _timeout)
    app.add_exception_handler(SpotdetError, _spotdet_error)
    app.add_exception_handler(Exception, _unexpected)
