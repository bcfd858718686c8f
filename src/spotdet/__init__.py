"""spotdet: on-demand, cost-aware object detection (ONNX Runtime and OpenVINO backends)."""

from spotdet.detector import Detector
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
from spotdet.results import Boxes, Result

__version__ = "0.1.0"

__all__ = [
    "Boxes", "ChecksumError", "DetectOptions", "Detector", "ImageLoadError", "ImageTooLargeError", "ModelNotFoundError", "ModelUnavailableError",
    "ProviderUnavailableError", "ResourceExhaustedError", "Result", "SpotdetError", "UnsupportedModelError", "UsageError", "__version__",
]
