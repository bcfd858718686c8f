"""Typed exceptions. Each carries the CLI exit code it maps to: 2 for a usage mistake, 1 for a failure."""

from __future__ import annotations


class SpotdetError(Exception):
    """Base class for every error spotdet raises on purpose."""

    exit_code = 1


class UsageError(SpotdetError, ValueError):
    """The caller asked for something that cannot work (bad option value, unknown name)."""

    exit_code = 2


class ModelNotFoundError(UsageError):
    """A model name is not in the zoo and is not a path to an ONNX file."""


class ModelUnavailableError(SpotdetError):
    """A zoo model is known but its file is neither local nor downloadable."""


class ChecksumError(SpotdetError):
    """A model file's sha256 differs from its card."""


class UnsupportedModelError(SpotdetError):
    """An ONNX file whose input/output layout matches no supported family."""


class ProviderUnavailableError(UsageError):
    """The requested ONNX Runtime execution provider is not installed or usable here."""


class StorageError(SpotdetError):
    """The operating system or SQLite refused a read or write (permission, read-only, disk full, damaged file).

    Exit code 74 (EX_IOERR), the same as the CLI gives any OSError or SQLite error.
    """

    exit_code = 74


class ImageLoadError(SpotdetError):
    """An input could not be turned into an image (missing, not an image, truncated, empty)."""


class ImageTooLargeError(ImageLoadError):
    """An encoded image has more pixels than allowed, or a format whose size cannot be read before decoding."""


class ResourceExhaustedError(SpotdetError):
    """The runtime could not allocate memory even after splitting the batch and shrinking the input."""


class MissingExtraError(UsageError):
    """A command needs an optional dependency ("extra") that is not installed; the message names the extra.

    A usage mistake (exit code 2), like asking for ``--engine ray`` without Ray: the install is incomplete for
    what was asked, nothing failed. ``extra`` is the pip extra to install (``pip install 'spotdet[EXTRA]'``).
    """

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
