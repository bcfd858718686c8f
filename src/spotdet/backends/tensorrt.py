"""TensorRT through ONNX Runtime: precision flags, an engine cache that survives restarts, shape profiles.

Why this module exists: ONNX Runtime's TensorRT execution provider, given no options, builds an fp32 engine
for every new session — seconds to minutes per model — so a service that scales to zero pays the build again at
every cold start, and FP16/INT8 are never used. TensorRT's serialised engine is valid for exactly one set of
(model bytes, precision flags and calibration, input shape profile, GPU, TensorRT version); spotdet computes
that key itself (``EngineKey``) and gives each key its own cache folder, so an engine is reused on every start
where it is valid and never where it is not (another GPU, a TensorRT upgrade, a re-calibrated table).

Precisions on TensorRT (``trt_precision``):

* ``fp32``: the file as it is.
* ``fp16``: ``trt_fp16_enable`` (an fp16 variant file, or an fp32 file asked to run at fp16).
* ``int8-static`` (a QDQ file from ``spotdet optimize --precision int8-static``): ``trt_int8_enable``; the
  Q/DQ nodes carry the scales (TensorRT refuses a calibration table with them), fp16 for the float parts.
* ``int8`` (an fp32 file plus a calibration table from ``spotdet optimize --precision int8 --device
  tensorrt``): ``trt_int8_enable`` with ``trt_int8_calibration_table_name``, fp16 for layers without INT8.
* ``int8-dynamic`` / ``int4``: TensorRT has no kernels for those operators; ONNX Runtime runs them on CUDA.

The pieces here are pure functions of their inputs (no GPU needed), so they are tested on any machine.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from spotdet.backends.onnx_tools import Dim
from spotdet.errors import UnsupportedModelError, UsageError

log = logging.getLogger(__name__)

TRT_PROVIDER = "TensorrtExecutionProvider"
#: the calibration table spotdet writes beside an ``int8`` variant (ONNX Runtime's flatbuffers format)
CALIBRATION_SUFFIX = ".trt-calibration.flatbuffers"
#: default optimisation-profile ranges for symbolic dimensions: batch, and the input side (pixels)
DEFAULT_BATCH = (1, 8, 32)  # min, opt, max: the batcher's sizes fall in here
DEFAULT_SIDE = (32, 640, 1280)  # min (the coarsest stride, where the OOM fallback stops), opt, max
UNKNOWN_GPU = "unknown-gpu"


@dataclass(frozen=True)
class TrtPrecision:
    """The TensorRT builder flags for one spotdet precision."""

    name: str  # the spotdet precision it serves
    fp16: bool = False
    int8: bool = False
    needs_table: bool = False  # implicit INT8: the ranges come from spotdet's calibration table


TRT_PRECISIONS: dict[str, TrtPrecision] = {
    "fp32": TrtPrecision("fp32"),
    "fp16": TrtPrecision("fp16", fp16=True),
    "int8-static": TrtPrecision("int8-static", fp16=True, int8=True),
    "int8": TrtPrecision("int8", fp16=True, int8=True, needs_table=True),
}
#: precisions TensorRT cannot build: the file runs as it is, its integer operators on CUDA
CUDA_ONLY = ("int8-dynamic", "int4", "bf16")


def trt_precision(precision: str) -> TrtPrecision:
    """The builder flags for ``precision``; a precision TensorRT has no kernels for runs unflagged (fp32 build
    of the float parts, the rest on CUDA), with a warning."""
    if precision in TRT_PRECISIONS:
        return TRT_PRECISIONS[precision]
    if precision in CUDA_ONLY:
        log.warning("TensorRT has no kernels for %s operators: ONNX Runtime runs them on CUDA", precision)
        return TRT_PRECISIONS["fp32"]
    raise UsageError(f"precision {precision!r} has no TensorRT build; use one of {', '.join(TRT_PRECISIONS)}")


# -- optimisation profiles ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeProfile:
    """Min/opt/max shapes of each input with symbolic dimensions: TensorRT builds one engine valid for the whole
    range (and fastest at ``opt``) instead of one engine per shape."""

    min: dict[str, tuple[int, ...]]
    opt: dict[str, tuple[int, ...]]
    max: dict[str, tuple[int, ...]]

    @staticmethod
    def _text(shapes: dict[str, tuple[int, ...]]) -> str:
        # ONNX Runtime's format: "name:1x3x32x32,other:1x4"
        return ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in sorted(shapes.items()))

    def options(self) -> dict[str, str]:
        return {"trt_profile_min_shapes": self._text(self.min), "trt_profile_opt_shapes": self._text(self.opt),
                "trt_profile_max_shapes": self._text(self.max)}

    def describe(self) -> str:
        """One line that names the profile (part of the engine key)."""
        return f"min {self._text(self.min)}; opt {self._text(self.opt)}; max {self._text(self.max)}"


def _ranges(dims: Sequence[Dim], batch: tuple[int, int, int], side: tuple[int, int, int],
            name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    if len(dims) != 4:
        raise UnsupportedModelError(f"input {name!r} has symbolic dimensions but is not NCHW ({list(dims)}); "
                                    "TensorRT needs a shape profile spotdet cannot guess")
    triples: list[tuple[int, int, int]] = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int) and dim > 0:
            triples.append((dim, dim, dim))
        elif axis == 0:
            triples.append(batch)
        elif axis in (2, 3):
            triples.append(side)
        else:
            raise UnsupportedModelError(f"input {name!r} has a symbolic channel dimension ({list(dims)}); "
                                        "spotdet models take 3 channels")
    lo, mid, hi = zip(*triples)
    return lo, mid, hi


def shape_profile(inputs: Sequence[tuple[str, Sequence[Dim]]], batch: tuple[int, int, int] = DEFAULT_BATCH,
                  side: tuple[int, int, int] = DEFAULT_SIDE) -> ShapeProfile | None:
    """The profile for ``inputs`` (name, dims as ``onnx_tools.dims`` reads them); None when every dimension is
    fixed (TensorRT then needs no profile). ``batch`` and ``side`` are (min, opt, max)."""
    for label, (lo, mid, hi) in (("batch", batch), ("side", side)):
        if not 1 <= lo <= mid <= hi:
            raise UsageError(f"a profile's {label} range must be 1 <= min <= opt <= max, got {lo}, {mid}, {hi}")
    symbolic = [(name, dims) for name, dims in inputs if any(not (isinstance(d, int) and d > 0) for d in dims)]
    if not symbolic:
        return None
    ranges = {name: _ranges(dims, batch, side, name) for name, dims in symbolic}
    return ShapeProfile({n: r[0] for n, r in ranges.items()}, {n: r[1] for n, r in ranges.items()},
                        {n: r[2] for n, r in ranges.items()})


# -- what the engine depends on ----------------------------------------------------------------------------------
def gpu_name(device_id: int = 0) -> str:
    """The GPU's name from NVML (``"NVIDIA L4"``); ``unknown-gpu`` when NVML cannot tell (then every GPU shares
    one key: the engine cache warns, since an engine from another GPU model fails to load or runs slowly)."""
    from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable

    try:
        with Nvml() as nvml:
            if 0 <= device_id < nvml.count:
                return nvml.names[device_id]
            log.warning("GPU %d: NVML sees %d GPU(s); the engine key uses no GPU name", device_id, nvml.count)
    except NvmlUnavailable as exc:
        log.warning("TensorRT engine key without the GPU name: %s", exc)
    return UNKNOWN_GPU


@functools.lru_cache(maxsize=1)
def tensorrt_runtime() -> str | None:
    """The TensorRT that ONNX Runtime's provider would load (``"libnvinfer 10.3.0"``), or None when none loads.
    Asked once per process: every backend load on a GPU machine asks, and a failed import is retried each time.

    Why: onnxruntime-gpu lists ``TensorrtExecutionProvider`` whether or not TensorRT itself is installed (most
    CUDA machines have no TensorRT); asking for it then makes ONNX Runtime print an error banner and retry on CUDA
    *without* the CUDA options. ``choose_providers`` asks this first.
    """
    try:
        import tensorrt  # type: ignore[import-not-found]

        return f"tensorrt {tensorrt.__version__}"
    except Exception:  # ImportError, or an install whose libraries do not load
        pass
    for lib in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            number = int(ctypes.CDLL(lib).getInferLibVersion())
        except (OSError, AttributeError):
            continue
        # 100300 -> 10.3.0 (TensorRT >= 10); 8601 -> 8.6.1
        major, rest = (number // 10000, number % 10000) if number >= 100000 else (number // 1000, number % 1000)
        return f"libnvinfer {major}.{rest // 100}.{rest % 100}"
    return None


def tensorrt_version() -> str:
    """The TensorRT that builds the engine (``tensorrt_runtime``), else ONNX Runtime's own version and build (it
    pins the TensorRT major version it was built against)."""
    found = tensorrt_runtime()
    if found:
        return found
    import onnxruntime as ort

    build = ort.get_build_info() if hasattr(ort, "get_build_info") else ""
    return f"onnxruntime {ort.__version__} ({build})" if build else f"onnxruntime {ort.__version__}"


@dataclass(frozen=True)
class EngineKey:
    """Everything a TensorRT engine depends on; ``digest`` names its cache folder."""

    model_sha256: str
    precision: str
    profile: str  # ShapeProfile.describe(), or "static" for a model with fixed input shapes
    gpu: str
    tensorrt: str
    calibration_sha256: str | None = None  # implicit INT8: the table's content

    @property
    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def folder(self, root: Path) -> Path:
        return root / f"{self.precision}-{self.digest}"


def engine_root() -> Path:
    """Where engines live: ``<spotdet home>/tensorrt`` (SPOTDET_CACHE_DIR/tensorrt when that is set)."""
    from spotdet.models.locations import spotdet_home

    return spotdet_home() / "tensorrt"


def engine_folder(key: EngineKey, root: Path | None = None) -> Path:
    """The key's cache folder, created, with ``key.json`` in it so a person can tell engines apart."""
    folder = key.folder(root or engine_root())
    folder.mkdir(parents=True, exist_ok=True)
    note = folder / "key.json"
    if not note.exists():
        from spotdet.atomic import atomic_write_text

        atomic_write_text(note, json.dumps(asdict(key), indent=2))
    return folder


def calibration_table_for(model_path: str | Path) -> Path:
    """Where the calibration table of an ``int8`` variant sits: beside the model file."""
    path = Path(model_path)
    return path.with_name(path.stem + CALIBRATION_SUFFIX)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TrtPlan:
    """The TensorRT provider's options for one session, and the key they were made from."""

    key: EngineKey
    folder: Path
    options: dict[str, str] = field(default_factory=dict)


def trt_plan(model_bytes: bytes, precision: str, inputs: Sequence[tuple[str, Sequence[Dim]]], device_id: int = 0,
             table: Path | None = None, batch: tuple[int, int, int] = DEFAULT_BATCH,
             side: tuple[int, int, int] = DEFAULT_SIDE, gpu: str | None = None, trt_version: str | None = None,
             root: Path | None = None) -> TrtPlan:
    """Options for ``TensorrtExecutionProvider``: precision flags, the engine and timing caches in the key's
    folder, the shape profile. ``gpu`` and ``trt_version`` default to this machine's (tests pass their own)."""
    flags = trt_precision(precision)
    if flags.needs_table and (table is None or not Path(table).is_file()):
        raise UsageError(f"INT8 on TensorRT needs the calibration table {table or '(none given)'}; make it with "
                         "`spotdet optimize MODEL --precision int8 --calib DIR --device tensorrt`")
    profile = shape_profile(inputs, batch, side)
    key = EngineKey(sha256_bytes(model_bytes), flags.name, profile.describe() if profile else "static",
                    gpu if gpu is not None else gpu_name(device_id),
                    trt_version if trt_version is not None else tensorrt_version(),
                    sha256_bytes(Path(table).read_bytes()) if flags.needs_table and table else None)
    folder = engine_folder(key, root)
    options = {"device_id": str(device_id), "trt_fp16_enable": str(flags.fp16), "trt_int8_enable": str(flags.int8),
               "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(folder),
               "trt_timing_cache_enable": "True"}
    if flags.needs_table and table:
        # an absolute name: ONNX Runtime joins it to the engine cache path, and joining an absolute path keeps it
        options["trt_int8_calibration_table_name"] = str(Path(table).resolve())
        options["trt_int8_use_native_calibration_table"] = "False"  # ONNX Runtime's flatbuffers table
    if profile is not None:
        options.update(profile.options())
    return TrtPlan(key, folder, options)
