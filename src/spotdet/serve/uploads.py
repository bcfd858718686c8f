"""Reading uploaded images safely: size limits, read timeouts, field names, content types, pixel limits.

The body counts against the request's memory budget as it arrives (``budget.py``); an image's pixels are
counted from its header, before it is decoded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from spotdet.errors import ImageLoadError, ImageTooLargeError
from spotdet.serve.budget import RequestBudget
from spotdet.vision.image_io import check_pixels, decode_bytes, encoded_size

# Formats whose size Pillow reads from the header; anything else cannot be checked against --max-pixels.
HEADER_FORMATS = "JPEG, PNG, BMP, WebP, TIFF or GIF"


class UploadError(Exception):
    """A request the service refuses; becomes an HTTP error with a JSON body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class ClientDisconnectedError(UploadError):
    """The client went away before its body was in (answered 499, which nobody reads, and counted)."""

    def __init__(self, received: int) -> None:
        super().__init__(499, f"client disconnected after sending {received} bytes of the body")
        self.received = received


@dataclass
class Upload:
    name: str
    data: bytes


async def read_body(request: Request, limit: int, budget: RequestBudget | None = None,
                    timeout: float | None = None) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes.

    Each part must arrive within ``timeout`` seconds of the previous one (408, and the connection is
    closed). What arrives is taken from ``budget`` twice over: the bytes received and the copy they become.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise UploadError(413, f"upload of {int(declared)} bytes exceeds the limit of {limit} bytes "
                                       "(--max-upload-mb)")
        except ValueError:
            raise UploadError(400, "invalid Content-Length header") from None
    body = bytearray()
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            if budget is not None:
                budget.take(2 * len(chunk), "the upload")
            body.extend(chunk)
            if len(body) > limit:
                raise UploadError(413, f"upload exceeds the limit of {limit} bytes (--max-upload-mb)")
    except TimeoutError:
        raise UploadError(408, f"request body stalled: no data for {timeout:g} s after {len(body)} bytes "
                               "(--body-timeout)", {"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientDisconnectedError(len(body)) from None
    finally:
        await chunks.aclose()
    return bytes(body)


async def read_uploads(request: Request, field_names: tuple[str, ...], limit: int, max_files: int,
                       budget: RequestBudget | None = None, timeout: float | None = None) -> list[Upload]:
    """Images from a multipart form (the named fields) or from a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, limit, budget, timeout)
    size = len(body)
    try:
        return await _uploads(request, body, ctype, field_names, max_files)
    finally:
        # The body itself is no longer needed: only the images' bytes stay, counted once from now on.
        request._body = b""  # noqa: SLF001
        del body
        if budget is not None:
            budget.give(size)


async def _uploads(request: Request, body: bytes, ctype: str, field_names: tuple[str, ...],
                   max_files: int) -> list[Upload]:
    if not body:
        raise UploadError(400, "empty request body: send the image as multipart field 'image' or as the raw body")
    if ctype == "multipart/form-data":
        # Starlette parses the form from the cached body once it is set on the request.
        request._body = body  # noqa: SLF001 - documented Starlette behaviour: stream() replays _body
        try:
            form = await request.form(max_files=max_files, max_fields=100)
        except Exception as exc:  # malformed or truncated multipart body
            raise UploadError(400, f"could not parse the multipart form: {exc}") from None
        try:
            uploads = []
            for name in field_names:
                for item in form.getlist(name):
                    if isinstance(item, UploadFile):
                        uploads.append(Upload(item.filename or name, await item.read()))
                    else:
                        uploads.append(Upload(name, item.encode() if isinstance(item, str) else bytes(item)))
            if not uploads:
                got = ", ".join(sorted(set(form.keys()))) or "no fields"
                wanted = " or ".join(repr(n) for n in field_names)
                raise UploadError(422, f"expected a multipart file field named {wanted}; got {got}")
            return uploads
        finally:
            await form.close()
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return [Upload("body", body)]
    raise UploadError(415, f"unsupported content type {ctype or '(none)'}: use multipart/form-data with a field "
                           "'image', or send the image bytes with an image/* content type")


def _refusal(upload: Upload, exc: ImageTooLargeError) -> UploadError:
    if encoded_size(upload.data) is None:  # not an image, or a format whose size only decoding would tell
        return UploadError(400, f"{upload.name}: not a decodable image, or a format whose size cannot be read "
                                f"before decoding (the service takes {HEADER_FORMATS})")
    return UploadError(413, str(exc))


def image_size(upload: Upload, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the upload's header, without decoding; 400/413 when it cannot be taken."""
    if not upload.data:
        raise UploadError(400, f"{upload.name}: empty file")
    try:
        return check_pixels(upload.data, max_pixels, upload.name)
    except ImageTooLargeError as exc:
        raise _refusal(upload, exc) from None
    except ImageLoadError as exc:  # bytes that are no image format at all
        raise UploadError(400, str(exc)) from None


def decode_upload(upload: Upload, max_pixels: int) -> np.ndarray:
    """Decode one upload to BGR, refusing images with more than ``max_pixels`` before decoding them.

    The limit holds for every format: an image whose size cannot be read from its header is refused (400)
    rather than decoded to find out.
    """
    if not upload.data:
        raise UploadError(400, f"{upload.name}: empty file")
    try:
        image = decode_bytes(upload.data, upload.name, max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        raise _refusal(upload, exc) from None
    except ImageLoadError as exc:
        raise UploadError(400, str(exc)) from None
    if image.shape[0] * image.shape[1] > max_pixels:  # the header lied (never seen; kept as a last check)
        raise UploadError(413, f"{upload.name}: image exceeds the limit of {max_pixels} pixels (--max-pixels)")
    return image
