"""Turn whatever the caller passes (path, bytes, numpy array, PIL image) into an 8-bit BGR array.

Pixel limits hold before decoding: with ``max_pixels`` set, an encoded image's dimensions are read from its
header (Pillow opens files lazily: JPEG, PNG, BMP, WebP, TIFF, GIF, PNM and the other formats Pillow knows)
and an image over the limit is refused without allocating it. A format whose size cannot be read that way is
refused too, rather than decoded to find out: a 4 MB file can decode to gigabytes.

Only regular files are read, and never one larger than ``max_file_bytes`` (``MAX_FILE_BYTES``, about 657 MB, at
the default pixel limit): a FIFO, a device or a socket named ``b.jpg`` is refused from its ``os.stat`` without
opening it for a read that would block (or never end: ``/dev/zero``), and an oversized file (a sparse file claims
a gigabyte for free) by its size, before a byte of it is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from spotdet.errors import ImageLoadError, ImageTooLargeError
from spotdet.options import DEFAULT_MAX_PIXELS  # re-exported: callers import it from here too

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

# The widest pixel OpenCV decodes, stored uncompressed (32-bit float RGBA), and room for metadata (EXIF, ICC
# profiles, thumbnails).
_MAX_BYTES_PER_PIXEL = 16
_METADATA_BYTES = 16 * 2**20


def max_file_bytes(max_pixels: int | None = None) -> int:
    """The largest image file read under a pixel limit (None, no limit: the default limit's size): an image of
    that many pixels fits even uncompressed at the widest pixel, so a larger file is refused by its size instead
    of being read whole to find out what it is."""
    return _MAX_BYTES_PER_PIXEL * max(max_pixels or 0, DEFAULT_MAX_PIXELS) + _METADATA_BYTES


MAX_FILE_BYTES = max_file_bytes()  # at the default pixel limit

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
        data = read_file(path, max_file_bytes(max_pixels))
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


# O_NONBLOCK: a FIFO swapped in after the os.stat check opens at once instead of waiting for a writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOT_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the image file at ``path``; ImageLoadError naming it and why when it cannot be read.

    Only a regular file of at most ``max_bytes`` is read (ImageTooLargeError for a larger one), checked by
    ``os.stat`` before opening and again on the open file (it may have been replaced in between); no more than
    ``max_bytes`` + 1 bytes are ever read, should the file grow while it is read."""
    try:
        check_regular_file(path, os.stat(path), max_bytes)
        with os.fdopen(os.open(path, _OPEN_FLAGS), "rb") as fh:
            check_regular_file(path, os.fstat(fh.fileno()), max_bytes)
            data = fh.read(max_bytes + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(f"{path}: no such file") from None
    except OSError as exc:  # name too long, permission denied, a path through a file, an I/O error, ...
        raise ImageLoadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{path}: more than {max_bytes} bytes, the limit for an image file")
    return data


def check_regular_file(path: str | os.PathLike, info: os.stat_result, max_bytes: int | None = None) -> None:
    """ImageLoadError unless ``info`` (``path``'s stat) is a regular file, and of at most ``max_bytes`` when
    given: reading anything else blocks (a FIFO without a writer) or never ends (``/dev/zero``)."""
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _NOT_FILES if is_kind(info.st_mode)), "a special file")
        raise ImageLoadError(f"{path}: not a file ({kind})")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ImageTooLargeError(f"{path}: {info.st_size} bytes exceeds the limit of {max_bytes} bytes for an "
                                 "image file")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)
