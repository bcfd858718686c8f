"""Out-of-memory injection at the backend boundary: ONNX Runtime's own allocation error, raised on demand.

A real allocation failure cannot be provoked reliably in a test; ``Detector`` recognises this message
through ``backend.is_out_of_memory``.
"""

from __future__ import annotations

ORT_ALLOCATION_ERROR = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"


class AllocationLimit:
    """Wraps backend.run: raise ONNX Runtime's allocation error above a batch size or an input area."""

    def __init__(self, backend, max_batch=99, max_side=9999):
        self.run, self.max_batch, self.max_side, self.calls = backend.run, max_batch, max_side, []
        backend.run = self

    def __call__(self, tensor):
        self.calls.append(tensor.shape)
        if tensor.shape[0] > self.max_batch or tensor.shape[2] > self.max_side:
            raise RuntimeError(ORT_ALLOCATION_ERROR)
        return self.run(tensor)
