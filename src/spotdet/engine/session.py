"""ONNX Runtime sessions: provider choice, speed-oriented options, and model graph clean-up on load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

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


_OOM_MARKERS = ("failed to allocate memory", "bad_alloc", "out of memory", "cudaerrormemoryallocation",
                "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception from session.run is an allocation failure (CPU or GPU)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = 3  # errors only; the cleaned graph has nothing worth a warning
    if threads:
        if threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        opts.intra_op_num_threads = threads
    return opts


def load_model_bytes(path: Path) -> bytes:
    """The model serialised after removing initializers listed as graph inputs.

    Old exporters (the PicoDet files) list every weight as an input; ONNX Runtime then treats the
    weights as overridable and skips constant folding. Dropping them from the inputs fixes that.
    """
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise UnsupportedModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    if len(keep) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return model.SerializeToString()


@dataclass
class EngineSession:
    """An ONNX Runtime session plus what callers need to know about it."""

    session: ort.InferenceSession
    providers: list[str]
    input_name: str
    input_shape: list[int | str | None]
    output_names: list[str]

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.input_shape[0], int)

    @property
    def provider(self) -> str:
        return self.providers[0]

    def run(self, tensor):
        return self.session.run(self.output_names, {self.input_name: tensor})


def create_session(path: Path, device: str = "auto", threads: int | None = None) -> EngineSession:
    providers = choose_providers(device)
    try:
        session = ort.InferenceSession(load_model_bytes(path), sess_options=session_options(threads),
                                       providers=providers)
    except UnsupportedModelError:
        raise
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise UnsupportedModelError(f"ONNX Runtime could not load {path}: {exc}") from None
    active = session.get_providers()
    if device in ("cuda", "tensorrt") and PROVIDER_CHAINS[device][0] not in active:
        raise ProviderUnavailableError(f"ONNX Runtime could not start {PROVIDER_CHAINS[device][0]}; {_GPU_HINT}")
    log.info("model %s on %s", Path(path).name, active[0])
    inp = session.get_inputs()[0]
    return EngineSession(session, active, inp.name, list(inp.shape), [o.name for o in session.get_outputs()])
