"""The backend protocol: what the Detector needs from an inference runtime, and nothing more.

A backend owns one loaded model on one device. The Detector hands it a preprocessed NCHW float32 batch and
gets the raw output arrays back; decoding, NMS and results stay runtime-independent. Adding a runtime
(OpenVINO, say) means one module implementing this protocol and one entry in ``spotdet.backends.BACKENDS``.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from spotdet.backends.onnx_tools import Dim


@runtime_checkable
class Backend(Protocol):
    name: str  # the runtime: "onnxruntime"
    provider: str  # what executes the model in this runtime, e.g. "CPUExecutionProvider"
    input_shape: Sequence[Dim]  # NCHW; str/None for dynamic dimensions

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for a batch, each with the batch as its first dimension."""
        ...

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether an exception raised by ``run`` is an allocation failure (the caller then splits or shrinks)."""
        ...


# ONNX Runtime's CUDA arena, once it reaches gpu_mem_limit, says "Available memory of N is smaller than requested
# bytes of M" (seen on an H100 with onnxruntime-gpu 1.31): no "out of memory" in it.
_OOM_MARKERS = ("failed to allocate memory", "bad_alloc", "out of memory", "cudaerrormemoryallocation",
                "cublas_status_alloc_failed", "cudnn_status_alloc_failed", "is smaller than requested bytes")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a runtime's exception is an allocation failure (CPU or GPU); runtimes report it as text."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


def dynamic_batch(backend: Backend) -> bool:
    """Whether the model takes any batch size (its first input dimension is symbolic)."""
    return not isinstance(backend.input_shape[0], int)


def fixed_size(backend: Backend) -> tuple[int, int] | None:
    """The (h, w) a model with a static spatial input accepts, or None when height and width are symbolic."""
    h, w = backend.input_shape[2], backend.input_shape[3]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None
