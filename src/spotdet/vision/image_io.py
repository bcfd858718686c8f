"""Turn whatever the caller passes (path, bytes, numpy array, PIL image) into an 8-bit BGR array.

Pixel limits hold before decoding: with ``max_pixels`` set, an encoded image's dimensions are read from its
header (Pillow opens files lazily: JPEG, PNG, BMP, WebP, TIFF, GIF, PNM and the other formats Pillow knows)
and an image over the limit is refused without allocating it. A format whose size cannot be read that way is
refused too, rather than decoded to find out: a 4 MB file can decode to gigabytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from spotdet.errors import ImageLoadError, ImageTooLargeError
from spotdet.options import DEFAULT_MAX_PIXELS  # re-exported: callers import it from here too

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def _check_not_truncated(data: bytes, label: str) -> None:
    """libjpeg decodes a truncated JPEG into a grey-filled image without failing; refuse it instead."""
    if data[:2] == _JPEG_SOI and data.rfind(_JPEG_EOI, max(0, len(data) - 65536)) == -1:
        raise ImageLoadError(f"{label}: truncated JPEG (no end-of-image marker)")


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header, without decoding the pixels; None if unreadable."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:  # reads the header only
                return header.size
    except Image.DecompressionBombError:  # Pillow's own bomb limit (2x its warning size): surely over ours
        return (2**31 - 1, 1)
    except Exception:  # not a format Pillow reads lazily
        return None


# Formats OpenCV decodes whose size Pillow cannot read from the header, by their first bytes.
_OPENCV_ONLY_MAGIC = (b"v/1\x01",  # OpenEXR
                      b"#?RADIANCE", b"#?RGBE",  # Radiance HDR
                      b"P7", b"PF", b"Pf",  # PAM, PFM
                      b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51",  # JPEG 2000 (when Pillow lacks OpenJPEG)
                      b"\x59\xa6\x6a\x95")  # Sun raster


def check_pixels(data: bytes, max_pixels: int, label: str = "image") -> tuple[int, int]:
    """The encoded image's (width, height); ImageTooLargeError above ``max_pixels`` or when a known image format's
    size cannot be read, ImageLoadError for bytes that are no image format at all."""
    size = encoded_size(data)
    if size is None:
        if not data.startswith(_OPENCV_ONLY_MAGIC):
            raise ImageLoadError(f"{label}: not a decodable image (not an image format spotdet reads)")
        raise ImageTooLargeError(f"{label}: the image size cannot be read before decoding (format not supported "
                                 "with a pixel limit; use JPEG, PNG, BMP, WebP, TIFF or GIF)")
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{label}: {width}x{height} = {width * height} pixels exceeds the limit of "
                                 f"{max_pixels} (--max-pixels)")
    return size


def decode_bytes(data: bytes, label: str = "image", exif_orientation: bool = True,
                 max_pixels: int | None = None) -> np.ndarray:
    """Decode an encoded image; grayscale, alpha and 16-bit inputs come back as 8-bit BGR.

    ``max_pixels``: refuse (ImageTooLargeError) before decoding an image with more pixels.
    """
    if not data:
        raise ImageLoadError(f"{label}: empty (0 bytes)")
    _check_not_truncated(data, label)
    if max_pixels is not None:
        check_pixels(data, max_pixels, label)
    flags = cv2.IMREAD_COLOR if exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None or img.size == 0:
        raise ImageLoadError(f"{label}: not a decodable image (corrupt, truncated or unsupported format)")
    return img


def from_array(arr: np.ndarray, label: str = "array") -> np.ndarray:
    """Normalise a caller's array (BGR like OpenCV, gray, BGRA, 16-bit or float) to uint8 BGR HxWx3."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(f"{label}: expected HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(f"{label}: zero-size image {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(arr)) <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        raise ImageLoadError(f"{label}: unsupported dtype {arr.dtype}")
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(arr)


def load_image(source: ImageSource, exif_orientation: bool = True,
               max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """Return (BGR uint8 image, path or None) for any supported source.

    ``max_pixels`` applies to encoded sources (files, bytes), checked before decoding; arrays and PIL images
    are already decoded.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ImageLoadError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ImageLoadError(f"{path}: not a file (a directory)") from None
        except OSError as exc:  # name too long, permission denied, a path through a file, ...
            raise ImageLoadError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return decode_bytes(data, str(path), exif_orientation, max_pixels), str(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), "image bytes", exif_orientation, max_pixels), None
    if isinstance(source, np.ndarray):
        return from_array(source), None
    if _is_pil(source):
        if source.mode.startswith("I") or source.mode == "F":
            # convert("RGB") clips 16/32-bit values instead of scaling them: go through the array path.
            arr = np.asarray(source)
            if arr.dtype.kind in "iu" and arr.dtype != np.uint8:
                arr = np.clip(arr, 0, 65535).astype(np.uint16)
            return from_array(arr, "PIL image"), getattr(source, "filename", None) or None
        rgb = np.asarray(source.convert("RGB"))
        if rgb.size == 0:
            raise ImageLoadError("PIL image: zero-size")
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), getattr(source, "filename", None) or None
    raise ImageLoadError(
        f"unsupported image source of type {type(source).__name__}; pass a path, bytes, a numpy array or a PIL image"
    )


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)
