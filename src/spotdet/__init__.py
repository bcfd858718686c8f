"""spotdet: on-demand, cost-aware object detection (ONNX Runtime and OpenVINO backends).

``Detector``, ``Result`` and ``Boxes`` are loaded on first use (PEP 562 ``__getattr__``): importing any
``spotdet.*`` module, the CLI's ``--help`` included, must not pay for numpy, OpenCV and ONNX Runtime.
"""

from typing import TYPE_CHECKING

from spotdet.errors import (
    ResourceExhaustedError,
    ChecksumError,
    ImageLoadError,
    ImageTooLargeError,
    ModelNotFoundError,
    ModelUnavailableError,
    ProviderUnavailableError,
    SpotdetError,
    UnsupportedModelError,
    UsageError,
)
from spotdet.options import DetectOptions

if TYPE_CHECKING:
    from spotdet.detector import Detector
    from spotdet.results import Boxes, Result

#: public names whose modules import numpy/OpenCV/ONNX Runtime: imported when first asked for
_LAZY = {"Detector": "spotdet.detector", "Boxes": "spotdet.results", "Result": "spotdet.results"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spotdet' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Boxes", "ChecksumError", "DetectOptions", "Detector", "ImageLoadError", "ImageTooLargeError", "ModelNotFoundError", "ModelUnavailableError",
    "ProviderUnavailableError", "ResourceExhaustedError", "Result", "SpotdetError", "UnsupportedModelError", "UsageError", "__version__",
]
