"""The ONNX Runtime backend: provider choice and options, speed-oriented session options, model clean-up on load.

``ort_session`` is the only place an ``onnxruntime.InferenceSession`` is created, by the Detector and by the
tools that check or calibrate graphs (optimize), so every session gets the same options and the same error
handling.

On a GPU each provider gets options (``provider_options``), because the defaults are wrong for a detector
service: the CUDA arena doubles on every growth (``arena_extend_strategy=kSameAsRequested`` keeps it at what was
asked for, so the VRAM a model reports is what it needs), and TensorRT rebuilds an fp32 engine on every start
(``backends/tensorrt.py`` gives it precision flags, a keyed engine cache and shape profiles). ``OrtBackend.run``
binds its input and outputs on the device the model runs on (I/O binding): one host-to-device copy of the batch
and one device-to-host copy of each output per call, nothing staged in between.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from spotdet.backends.base import is_out_of_memory
from spotdet.backends.onnx_tools import dims, graph_precision, real_inputs, runtime_bytes
from spotdet.backends.tensorrt import (DEFAULT_BATCH, DEFAULT_SIDE, TRT_PROVIDER, TrtPlan, calibration_table_for,
                                       tensorrt_runtime, trt_plan)
from spotdet.errors import ProviderUnavailableError, UnsupportedModelError, UsageError
from spotdet.hardware import cpu_info

log = logging.getLogger(__name__)

# Preference order per requested device; ONNX Runtime tries providers in list order.
PROVIDER_CHAINS: dict[str, list[str]] = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
DEVICES = ("auto", *PROVIDER_CHAINS)
CUDA_PROVIDER = "CUDAExecutionProvider"
GPU_PROVIDERS = (TRT_PROVIDER, CUDA_PROVIDER)
#: the GPU index a process uses when no ``gpu`` is passed (``--gpu N`` sets it for a command)
GPU_ENV = "SPOTDET_GPU"
_GPU_HINT = "install onnxruntime-gpu (pip install 'spotdet[gpu]') on a machine with an NVIDIA driver and CUDA"


def choose_providers(device: str = "auto", available: list[str] | None = None,
                     tensorrt: str | None | bool = True) -> list[str]:
    """Providers to ask ONNX Runtime for; ``auto`` picks the best one installed.

    ``tensorrt``: the TensorRT library the TensorRT provider would load (``tensorrt_runtime()``, asked only when
    ONNX Runtime lists the provider; None: none loads). Without it the provider is not offered: ``auto`` runs on
    CUDA with its options, and ``device="tensorrt"`` is a clear error rather than ONNX Runtime's silent retry.
    """
    available = list(ort.get_available_providers() if available is None else available)
    if device not in DEVICES:
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if TRT_PROVIDER in available and (tensorrt_runtime() if tensorrt is True else tensorrt) is None:
        available.remove(TRT_PROVIDER)
        if device == "tensorrt":
            raise ProviderUnavailableError(
                "ONNX Runtime has its TensorRT provider, but TensorRT itself (libnvinfer) does not load here: "
                "pip install tensorrt (the build matching onnxruntime-gpu's CUDA), or use device='cuda'")
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


#: ONNX Runtime's "x64 precision mode" for INT8 on CPUs without VNNI (kOrtSessionOptionsAvx2PrecisionMode)
PRECISE_INT8_KEY = "session.x64quantprecision"
#: auto (default: exact INT8 sums where the CPU has no VNNI) | on | off (ONNX Runtime's default kernels)
EXACT_INT8_ENV = "SPOTDET_INT8_EXACT"


def exact_int8() -> bool:
    """Whether sessions ask ONNX Runtime for exact INT8 sums (see ``session_options``)."""
    mode = os.environ.get(EXACT_INT8_ENV, "auto").strip().lower()
    if mode not in ("auto", "on", "off"):
        raise UsageError(f"{EXACT_INT8_ENV} must be auto, on or off, got {mode!r}")
    return mode == "on" or (mode == "auto" and not cpu_info().vnni)


def session_options(threads: int | None = None, log_level: int = 3) -> ort.SessionOptions:
    """Full graph optimisation, sequential execution, memory patterns; errors-only logging; exact INT8 sums on a
    CPU without VNNI.

    Why the last: without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits
    (``vpmaddubsw``) and saturate. Measured with an AVX2-only CPU emulated (qemu-user ``-cpu EPYC-Milan``;
    docs/hardware.md): an int8-static picodet-s-416 scored 31.88 mAP there against 32.77 with VNNI, and 32.77
    again with ``PRECISE_INT8_KEY`` (outputs bit-identical to VNNI's). With VNNI the sums are exact already and
    the key only costs time (10-11% on this project's AVX-512 VNNI machine), so it is set only where VNNI is absent
    (SPOTDET_INT8_EXACT=on|off overrides: off trades that accuracy for ONNX Runtime's faster default kernels).

    ``log_level`` 4 (fatal only) suits callers that turn a failure into one line of their own.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = log_level
    if exact_int8():
        opts.add_session_config_entry(PRECISE_INT8_KEY, "1")
    if threads:
        if threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        opts.intra_op_num_threads = threads
    return opts


def default_gpu(gpu: int | None = None) -> int:
    """``gpu`` itself, else ``$SPOTDET_GPU``, else 0: the CUDA device index the GPU providers run on."""
    if gpu is None:
        raw = os.environ.get(GPU_ENV, "").strip()
        try:
            gpu = int(raw) if raw else 0
        except ValueError:
            raise UsageError(f"{GPU_ENV} must be a GPU index (0, 1, ...), got {raw!r}") from None
    if gpu < 0:
        raise UsageError(f"the GPU index must be >= 0, got {gpu}")
    return gpu


def cuda_options(device_id: int = 0, mem_limit_bytes: int | None = None, variable_size: bool = False) -> dict[str, str]:
    """Options for ``CUDAExecutionProvider``.

    * ``arena_extend_strategy=kSameAsRequested``: the default doubles the arena at each growth, so a model could
      hold up to twice the VRAM it uses; the VRAM a bench row reports should be what the model needs.
    * ``cudnn_conv_algo_search``: EXHAUSTIVE times every convolution algorithm once per input shape and keeps the
      fastest — right for a fixed-size model; a variable-size one (``imgsz`` per call) would pay that search at
      every new size, so it uses cuDNN's HEURISTIC choice instead.
    * ``gpu_mem_limit``: a cap on the arena (bytes), for sharing a GPU; an allocation beyond it fails as an
      out-of-memory error, which the Detector answers by splitting the batch or shrinking the input.
    """
    if mem_limit_bytes is not None and mem_limit_bytes <= 0:
        raise UsageError(f"gpu_mem_limit must be > 0 bytes, got {mem_limit_bytes}")
    opts = {"device_id": str(device_id), "arena_extend_strategy": "kSameAsRequested",
            "cudnn_conv_algo_search": "HEURISTIC" if variable_size else "EXHAUSTIVE",
            "do_copy_in_default_stream": "True"}
    if mem_limit_bytes is not None:
        opts["gpu_mem_limit"] = str(int(mem_limit_bytes))
    return opts


ProviderSpec = str | tuple[str, dict[str, str]]


def provider_options(providers: Sequence[str], cuda: dict[str, str] | None = None,
                     trt: dict[str, str] | None = None) -> list[ProviderSpec]:
    """The provider list ONNX Runtime takes: each GPU provider with its options, the CPU provider as it is."""
    out: list[ProviderSpec] = []
    for name in providers:
        opts = {CUDA_PROVIDER: cuda, TRT_PROVIDER: trt}.get(name)
        out.append((name, dict(opts)) if opts else name)
    return out


def ort_session(model: str | Path | bytes | onnx.ModelProto, providers: Sequence[ProviderSpec] | None = None,
                threads: int | None = None, log_level: int = 3) -> ort.InferenceSession:
    """An InferenceSession on a file, serialised bytes or an in-memory graph (CPU unless ``providers`` say;
    a provider may come with its options as ``(name, {option: value})``).

    Raises ONNX Runtime's own exception on failure: callers word the error for their context.
    """
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=session_options(threads, log_level),
                                providers=list(providers or ["CPUExecutionProvider"]))


def runtime_precision(requested: str | None, graph: onnx.ModelProto, table_exists: bool) -> str:
    """What the model runs at: what was asked for, else what the file holds — an fp32 file with a calibration
    table beside it is an ``int8`` variant for TensorRT (``optimize --precision int8 --device tensorrt``)."""
    if requested:
        return requested
    held = graph_precision(graph)
    return "int8" if held == "fp32" and table_exists else held


def not_started(provider: str) -> str:
    """Why a GPU provider that ONNX Runtime lists did not start, and what to do: onnxruntime-gpu is there, so the
    usual cause is the CUDA or cuDNN libraries it loads at run time (ONNX Runtime logs which one)."""
    return (f"ONNX Runtime lists {provider} but could not start it: the CUDA or cuDNN libraries it loads are "
            "missing or of another major version (ONNX Runtime's own error names the file); install the CUDA and "
            "cuDNN major versions this onnxruntime-gpu was built for (ONNX Runtime's CUDA provider requirements), "
            "or use device='cpu'")


class OrtBackend:
    """A model loaded in ONNX Runtime on the best available (or the requested) execution provider.

    ``precision``: what to run at on TensorRT (None: what the file holds; see ``backends/tensorrt.py``).
    ``gpu``: the CUDA device index (None: ``$SPOTDET_GPU`` or 0). ``gpu_mem_limit``: a cap on the CUDA arena in
    bytes. ``io_binding``: bind input and outputs on the model's device (None: on for a GPU provider; the CPU
    provider takes numpy arrays as they are). ``batch`` / ``side``: TensorRT's (min, opt, max) profile ranges for
    a symbolic batch / input side.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 precision: str | None = None, gpu: int | None = None, gpu_mem_limit: int | None = None,
                 io_binding: bool | None = None, batch: tuple[int, int, int] = DEFAULT_BATCH,
                 side: tuple[int, int, int] = DEFAULT_SIDE) -> None:
        providers = choose_providers(device)
        self.device_id = default_gpu(gpu)
        data = runtime_bytes(path)
        graph = onnx.load_from_string(data)
        inputs = [(i.name, dims(i)) for i in real_inputs(graph)]
        table = calibration_table_for(path)
        #: what the model runs at (the file's precision, or the TensorRT precision asked for)
        self.precision = runtime_precision(precision, graph, table.is_file())
        self.trt: TrtPlan | None = None
        if TRT_PROVIDER in providers:
            self.trt = trt_plan(data, self.precision, inputs, self.device_id,
                                table if self.precision == "int8" else None, batch, side)
        variable_size = any(not isinstance(d, int) for _, shape in inputs for d in shape[2:])
        specs = provider_options(providers, cuda_options(self.device_id, gpu_mem_limit, variable_size),
                                 self.trt.options if self.trt else None)
        try:
            self.session = ort_session(data, specs, threads)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise UnsupportedModelError(f"ONNX Runtime could not load {path}: {exc}") from None
        self.providers = self.session.get_providers()
        if device in ("cuda", "tensorrt") and PROVIDER_CHAINS[device][0] not in self.providers:
            raise ProviderUnavailableError(not_started(PROVIDER_CHAINS[device][0]))
        if device == "auto" and providers[0] in GPU_PROVIDERS and self.provider not in GPU_PROVIDERS:
            log.warning("%s", not_started(providers[0]) + "; running on the CPU")
        if self.precision == "int8" and self.provider != TRT_PROVIDER:
            log.warning("%s is an int8 variant for TensorRT (fp32 graph + calibration table); on %s it runs "
                        "at fp32", Path(path).name, self.provider)
        if self.precision == "int8-dynamic" and self.provider in GPU_PROVIDERS:
            log.warning("%s is a dynamic INT8 export: ONNX Runtime has no GPU kernel for its ConvInteger nodes, so "
                        "they run on the CPU (on an H100 the zoo's two such files took 38-39 ms per image, about 10x "
                        "the float models; docs/gpu.md). On a GPU run its float version: spotdet optimize MODEL "
                        "--precision fp32, and for fp16 spotdet optimize MODEL-fp32 --precision fp16", Path(path).name)
        log.info("model %s on %s", Path(path).name, self.providers[0])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.io_binding = self.provider in GPU_PROVIDERS if io_binding is None else io_binding
        self._io_device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"

    @property
    def provider(self) -> str:
        return self.providers[0]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        if self.io_binding:
            return self.run_bound(tensor)
        return self.session.run(self.output_names, {self.input_name: tensor})

    def run_bound(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One run through I/O binding: the batch copied to the device once, outputs left where the model wrote
        them and copied back once each (a binding per call: concurrent calls never share buffers)."""
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(tensor), self._io_device, self.device_id)
        binding.bind_ortvalue_input(self.input_name, value)
        for name in self.output_names:
            binding.bind_output(name, self._io_device, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return is_out_of_memory(exc)

    def __repr__(self) -> str:
        return f"OrtBackend(provider={self.provider!r}, precision={self.precision!r}, input_shape={self.input_shape})"
