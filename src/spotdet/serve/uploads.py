"""Reading uploaded images safely: size limits, field names, content types, decompression bombs."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile

from spotdet.errors import ImageLoadError
from spotdet.vision.image_io import decode_bytes


class UploadError(Exception):
    """A request the service refuses; becomes an HTTP error with a JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    name: str
    data: bytes


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise UploadError(413, f"upload of {int(declared)} bytes exceeds the limit of {limit} bytes "
                                       "(--max-upload-mb)")
        except ValueError:
            raise UploadError(400, "invalid Content-Length header") from None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise UploadError(413, f"upload exceeds the limit of {limit} bytes (--max-upload-mb)")
    return bytes(body)


async def read_uploads(request: Request, field_names: tuple[str, ...], limit: int, max_files: int) -> list[Upload]:
    """Images from a multipart form (the named fields) or from a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, limit)
    if not body:
        raise UploadError(400, "empty request body: send the image as multipart field 'image' or as the raw body")
    if ctype == "multipart/form-data":
        # Starlette parses the form from the cached body once it is set on the request.
        request._body = body  # noqa: SLF001 - documented Starlette behaviour: stream() replays _body
        try:
            form = await request.form(max_files=max_files, max_fields=100)
        except Exception as exc:  # malformed or truncated multipart body
            raise UploadError(400, f"could not parse the multipart form: {exc}") from None
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
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return [Upload("body", body)]
    raise UploadError(415, f"unsupported content type {ctype or '(none)'}: use multipart/form-data with a field "
                           "'image', or send the image bytes with an image/* content type")


def decode_upload(upload: Upload, max_pixels: int) -> np.ndarray:
    """Decode one upload to BGR, refusing images with more than ``max_pixels`` before decoding them."""
    if not upload.data:
        raise UploadError(400, f"{upload.name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as header:  # reads the header only
                width, height = header.size
    except Image.DecompressionBombError:
        raise UploadError(413, f"{upload.name}: image dimensions exceed the pixel limit") from None
    except Exception:
        width = height = None  # not a format PIL reads lazily: OpenCV decides below
    if width is not None and width * height > max_pixels:
        raise UploadError(413, f"{upload.name}: {width}x{height} = {width * height} pixels exceeds the limit of "
                               f"{max_pixels} (--max-pixels)")
    try:
        image = decode_bytes(upload.data, upload.name)
    except ImageLoadError as exc:
        raise UploadError(400, str(exc)) from None
    if image.shape[0] * image.shape[1] > max_pixels:
        raise UploadError(413, f"{upload.name}: image exceeds the limit of {max_pixels} pixels (--max-pixels)")
    return image
