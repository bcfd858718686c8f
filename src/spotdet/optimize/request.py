"""What to build: one frozen, validated set of build settings for ``optimize()``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from spotdet.optimize.calibration import DEFAULT_COUNT
from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.mixed import DEFAULT_TARGET_DB

ACTIVATION_BITS = (8, 16)
BUILD_DEVICES = ("cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class OptimizeRequest:
    """The build settings. Which ones a precision needs, and which it refuses, its builder says
    (``optimize/precisions/``); what this class checks holds for every precision.

    precision: the precision to build (a name in ``precisions.PRECISIONS``); None keeps the model's own
        (with ``dynamic_batch`` / ``dynamic_shape``: only make it batchable / variable-size).
    dynamic_shape: make the input height and width symbolic (``dynamic_shape.py``), proven before writing.
    calib, calib_method, calib_count: calibration images (a folder), method and how many to sample.
    exclude_nodes: nodes kept in float (int8-static); None = the family's detection head (``head.py``).
    activation_bits: 16 = A16W8 (int8-static).
    mixed, target_db: int8-static with 8-bit activations keeps the activations that 8 bits ruin in float
        until the outputs agree with fp32 to ``target_db`` (None: ``mixed.DEFAULT_TARGET_DB``).
    device: the device the variant is built for; ``tensorrt`` with precision ``int8`` writes TensorRT's
        calibration table beside an fp32 file (``trt_calibration.py``). None: any device.
    """

    precision: str | None = None
    calib: Path | None = None
    calib_method: str = "minmax"
    calib_count: int = DEFAULT_COUNT
    dynamic_batch: bool = False
    dynamic_shape: bool = False
    exclude_nodes: tuple[str, ...] | None = None
    activation_bits: int = 8
    mixed: bool = True
    target_db: float | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and not isinstance(self.precision, str):
            raise PrecisionUnsupportedError(f"precision must be a name such as 'int8-static', got {self.precision!r}")
        if self.device not in (None, *BUILD_DEVICES):
            raise PrecisionUnsupportedError(f"device must be one of {', '.join(BUILD_DEVICES)}, got {self.device!r}")
        if self.activation_bits not in ACTIVATION_BITS:
            raise PrecisionUnsupportedError(f"activation bits must be 8 or 16, got {self.activation_bits}")
        target = DEFAULT_TARGET_DB if self.target_db is None else float(self.target_db)
        if not math.isfinite(target):
            raise PrecisionUnsupportedError(f"the mixed-precision target must be a number of dB, got {self.target_db}")
        # normalised, so that a request made from CLI strings and one made in Python compare equal
        object.__setattr__(self, "target_db", target)
        if self.calib is not None:
            object.__setattr__(self, "calib", Path(self.calib).expanduser())
        if self.exclude_nodes is not None:
            object.__setattr__(self, "exclude_nodes", tuple(self.exclude_nodes))
