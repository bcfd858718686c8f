"""Inference backends: the runtimes that execute a model file, each one module behind ``base.Backend``.

"Backend" means the inference runtime everywhere in spotdet; "engine" is kept for where batch jobs run
(local processes or Ray).

Which runtime ``auto`` picks: a GPU (``device`` cuda/tensorrt, or ``auto`` where ONNX Runtime has a GPU
provider) stays on ONNX Runtime; on a CPU, an fp32 model goes to OpenVINO when it is installed (same mAP as
ONNX Runtime on every float zoo model, faster on the CPUs measured, and it has bf16 kernels), else to ONNX
Runtime, unless a timed probe on this machine finds OpenVINO no faster (``probe.py``). Quantized files (int8-dynamic exports, int8-static QDQ variants, fp16 variants) stay on ONNX Runtime
under ``auto``: OpenVINO runs them with its own integer kernels, whose results differ (yolov8n-int8: 38.39 mAP
on OpenVINO against 36.92 on ONNX Runtime, the runtime the file was validated with). Some precisions are not
a file but a way of compiling it (``bf16``): those pick the runtime that has them.
"""

from __future__ import annotations

from pathlib import Path

from spotdet.backends.base import Backend, dynamic_batch, fixed_size
from spotdet.errors import UsageError

BACKENDS = ("onnxruntime", "openvino")
BACKEND_CHOICES = ("auto", *BACKENDS)
#: precisions applied when the runtime compiles the model (the file stays fp32), and the runtime that has them
RUNTIME_PRECISIONS = {"bf16": "openvino"}
_GPU_DEVICES = ("cuda", "tensorrt")


def choose_backend(backend: str = "auto", device: str = "auto", precision: str | None = None,
                   model_precision: str = "fp32", openvino_installed: bool | None = None,
                   gpu_providers: bool | None = None) -> str:
    """The runtime to load a model in: ``precision`` is what was asked for (bf16 needs OpenVINO),
    ``model_precision`` what the file holds. The last two flags are for tests (None = look at this machine)."""
    from spotdet.backends.onnxruntime import DEVICES

    if backend not in BACKEND_CHOICES:
        raise UsageError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
    if device not in DEVICES:
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    needs = RUNTIME_PRECISIONS.get(precision or "")
    if backend != "auto":
        if needs and backend != needs:
            raise UsageError(f"precision {precision!r} runs on the {needs} backend; use backend='{needs}' "
                             "(or 'auto')")
        if backend == "openvino" and device in _GPU_DEVICES:
            raise UsageError(f"device {device!r} runs on backend 'onnxruntime'; OpenVINO runs on the CPU here")
        return backend
    if needs:
        return needs
    if device in _GPU_DEVICES or model_precision != "fp32":
        return "onnxruntime"
    if device == "auto" and (_ort_has_gpu() if gpu_providers is None else gpu_providers):
        return "onnxruntime"
    if openvino_installed is None:
        from spotdet.backends.openvino import openvino_available

        openvino_installed = openvino_available()
    return "openvino" if openvino_installed else "onnxruntime"


def _ort_has_gpu() -> bool:
    import onnxruntime as ort

    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))


def load_backend(path: str | Path, backend: str = "auto", device: str = "auto", threads: int | None = None,
                 precision: str | None = None, model_precision: str = "fp32",
                 size: tuple[int, int] | None = None) -> Backend:
    """Load ``path`` in the chosen runtime; ``precision`` matters only for runtime precisions (bf16).

    Where ``auto`` would pick OpenVINO for an fp32 model on the CPU, a measurement on this machine decides
    instead (``probe.py``: cached per hardware and model; ``size`` is the input it times a variable-size model at).
    """
    chosen = choose_backend(backend, device, precision, model_precision)
    if chosen == "openvino" and backend == "auto" and precision not in RUNTIME_PRECISIONS:
        from spotdet.backends.probe import decide

        decision, loaded = decide(path, threads, size)
        if loaded is not None:
            return loaded
        if decision is not None:
            chosen = decision.chosen
    if chosen == "openvino":
        from spotdet.backends.openvino import OpenVinoBackend

        runtime_precision = precision if precision in RUNTIME_PRECISIONS else "fp32"
        return OpenVinoBackend(path, device=device, threads=threads, precision=runtime_precision)
    from spotdet.backends.onnxruntime import OrtBackend

    return OrtBackend(path, device=device, threads=threads)


__all__ = ["BACKENDS", "BACKEND_CHOICES", "RUNTIME_PRECISIONS", "Backend", "choose_backend", "dynamic_batch",
           "fixed_size", "load_backend"]
