"""Errors of ``spotdet optimize`` (subclasses of the package's typed errors, so the CLI maps them)."""

from __future__ import annotations

from spotdet.errors import SpotdetError, UsageError


class OptimizeError(SpotdetError):
    """Building or checking an optimized model failed (exit code 1)."""


class PrecisionUnsupportedError(UsageError):
    """The requested precision cannot be applied to this model (exit code 2), with the reason."""


class CalibrationError(UsageError):
    """Calibration images are missing or unreadable (exit code 2)."""


class DynamicBatchError(OptimizeError):
    """A batch-1 graph could not be proven to work with a symbolic batch dimension."""


class DynamicShapeError(OptimizeError):
    """A static-size graph could not be rewritten, or proven, to take a symbolic input height and width."""
