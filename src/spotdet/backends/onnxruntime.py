"""The ONNX Runtime backend: provider choice, speed-oriented session options, model clean-up on load.

``ort_session`` is the only place an ``onnxruntime.InferenceSession`` is created, by the Detector and by the
tools that check or calibrate graphs (optimize), so every session gets the same options and the same error
handling.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from spotdet.backends.base import is_out_of_memory
from spotdet.backends.onnx_tools import runtime_bytes
from spotdet.errors import ProviderUnavailableError, UnsupportedModelError, UsageError

log = logging.getLogger(__name__)

# Preference order per requested device; ONNX Runtime tries providers in list order.
PROVIDER_CHAINS: dict[str, list[str]] = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
DEVICES = ("auto", *PROVIDER_CHAINS)
_GPU_HINT = "install onnxruntime-gpu (pip install 'spotdet[gpu]') on a machine with an NVIDIA driver and CUDA"


def choose_providers(device: str = "auto", available: list[str] | None = None) -> list[str]:
    """Providers to ask ONNX Runtime for; ``auto`` picks the best one installed."""
    available = list(ort.get_available_providers() if available is None else available)
    if device not in DEVICES:
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        for chain in PROVIDER_CHAINS.values():
            if chain[0] in available:
                return [p for p in chain if p in available]
        return ["CPUExecutionProvider"]
    wanted = PROVIDER_CHAINS[device][0]
    if wanted not in available:
        raise ProviderUnavailableError(
            f"device {device!r} needs ONNX Runtime's {wanted}, which is not available here "
            f"(available: {', '.join(available)}); {_GPU_HINT}, or use device='cpu'"
        )
    return [p for p in PROVIDER_CHAINS[device] if p in available]


def session_options(threads: int | None = None, log_level: int = 3) -> ort.SessionOptions:
    """Full graph optimisation, sequential execution, memory patterns; errors-only logging.

    ``log_level`` 4 (fatal only) suits callers that turn a failure into one line of their own.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = log_level
    if threads:
        if threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        opts.intra_op_num_threads = threads
    return opts


def ort_session(model: str | Path | bytes | onnx.ModelProto, providers: list[str] | None = None,
                threads: int | None = None, log_level: int = 3) -> ort.InferenceSession:
    """An InferenceSession on a file, serialised bytes or an in-memory graph (CPU unless ``providers`` say).

    Raises ONNX Runtime's own exception on failure: callers word the error for their context.
    """
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=session_options(threads, log_level),
                                providers=providers or ["CPUExecutionProvider"])


class OrtBackend:
    """A model loaded in ONNX Runtime on the best available (or the requested) execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        providers = choose_providers(device)
        try:
            self.session = ort_session(runtime_bytes(path), providers, threads)
        except UnsupportedModelError:
            raise
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise UnsupportedModelError(f"ONNX Runtime could not load {path}: {exc}") from None
        self.providers = self.session.get_providers()
        if device in ("cuda", "tensorrt") and PROVIDER_CHAINS[device][0] not in self.providers:
            raise ProviderUnavailableError(f"ONNX Runtime could not start {PROVIDER_CHAINS[device][0]}; {_GPU_HINT}")
        log.info("model %s on %s", Path(path).name, self.providers[0])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def provider(self) -> str:
        return self.providers[0]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: tensor})

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return is_out_of_memory(exc)

    def __repr__(self) -> str:
        return f"OrtBackend(provider={self.provider!r}, input_shape={self.input_shape})"
