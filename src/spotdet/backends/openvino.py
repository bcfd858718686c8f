"""The OpenVINO backend: the same ONNX files on Intel/AMD CPUs, with bf16 kernels where the CPU has them.

Why a second runtime: on CPUs with native bf16 (AVX-512 BF16, AMX), OpenVINO's bf16 inference is the
precision lever that pays (issue 10's measurements: picodet-s-416 14.5 ms in ONNX Runtime fp32 -> 6.9 ms in
OpenVINO bf16 at the same mAP), where fp16 and int8 do not on these CPUs.

Precision is a property of the compiled model, not of the file: ``fp32`` compiles with an explicit f32
inference precision (OpenVINO would otherwise pick bf16 by itself on AMX CPUs, and fp32 must mean exact float
results); ``bf16`` asks for bf16 and is refused where the CPU has no native bf16.

Compiled models are cached under spotdet's home (OpenVINO's ``CACHE_DIR``), so a service that scaled to zero
does not pay compilation again on its next cold start.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from spotdet.backends.base import is_out_of_memory
from spotdet.errors import ProviderUnavailableError, UnsupportedModelError, UsageError

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # spotdet precision -> OpenVINO inference precision hint
INSTALL_HINT = "install it with `pip install 'spotdet[openvino]'`"
OV_DEVICE = "CPU"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _core():
    try:
        import openvino as ov
    except ImportError:
        raise ProviderUnavailableError(f"backend 'openvino' needs the openvino package, which is not installed; "
                                       f"{INSTALL_HINT}, or use backend='onnxruntime'") from None
    return ov.Core()


def check_bf16(capabilities: Iterable[str], cpu_name: str = "this CPU") -> None:
    """Refuse bf16 where the CPU has no native bf16 kernels (OpenVINO would emulate it, slower than fp32)."""
    if "BF16" not in set(capabilities):
        raise UsageError(f"precision 'bf16' needs a CPU with native bf16 (AVX-512 BF16 or AMX); {cpu_name} has "
                         "none, so bf16 would be emulated and slower than fp32. Use precision='fp32'")


def cache_dir() -> Path:
    from spotdet.models.locations import spotdet_home

    return spotdet_home() / "openvino-cache"


class OpenVinoBackend:
    """A model compiled by OpenVINO for the CPU at fp32 or bf16; one infer request per calling thread."""

    name = "openvino"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 precision: str = "fp32", cache: bool = True) -> None:
        if device not in ("auto", "cpu"):
            raise UsageError(f"backend 'openvino' runs on the CPU here; device {device!r} needs backend='onnxruntime'")
        if precision not in PRECISIONS:
            raise UsageError(f"backend 'openvino' runs fp32 or bf16 models, got precision {precision!r}")
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        core = _core()
        if precision == "bf16":
            check_bf16(core.get_property(OV_DEVICE, "OPTIMIZATION_CAPABILITIES"),
                       str(core.get_property(OV_DEVICE, "FULL_DEVICE_NAME")))
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache:
            cache_dir().mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir())
        try:
            model = core.read_model(str(path))
            self.compiled = core.compile_model(model, OV_DEVICE, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with the frontend's message
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UnsupportedModelError(f"OpenVINO could not load {path}: {first}") from None
        self.precision = precision
        self.provider = f"OpenVINO {OV_DEVICE} {PRECISIONS[precision]}"
        self.input_shape = [d.get_length() if d.is_static else None
                            for d in self.compiled.inputs[0].get_partial_shape()]
        self._local = threading.local()
        # Touch a tensor's numpy view once, here, on one thread: pyopenvino builds a function-local static on
        # first use, and threads racing into that first use deadlock (one waits on the static's guard while
        # holding the GIL, the other holds the guard and waits for the GIL); seen with 40 concurrent requests.
        _ = self._request().get_input_tensor(0).data
        log.info("model %s on %s", Path(path).name, self.provider)

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:  # an infer request is not thread-safe: the service runs batches on several threads
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        request = self._request()
        request.infer({0: tensor})
        # copies: the request's output buffers are reused by its next call
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.compiled.outputs))]

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return is_out_of_memory(exc)

    def __repr__(self) -> str:
        return f"OpenVinoBackend(provider={self.provider!r}, input_shape={self.input_shape})"
