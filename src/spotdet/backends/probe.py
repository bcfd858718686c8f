"""``backend="auto"`` on a CPU, decided by measuring this machine instead of by a fixed rule.

Why: whether OpenVINO pays for an fp32 model depends on the CPU. On an AVX-512 CPU with bf16 it was 1.6-3.2x
faster than ONNX Runtime end to end (issue 10); on an AVX2-only AMD EPYC it was 1.01-1.11x, within the noise.
So the first time an fp32 model is loaded with ``backend="auto"`` on a CPU, both runtimes run the model side
by side for a second or two (``bench.measure.interleaved_ms``), and OpenVINO is kept only when it is at least
``OPENVINO_MARGIN`` faster. The answer is cached per hardware fingerprint (CPU, features, cores, GPUs, runtime
versions), model file sha256 and thread count, in ``<spotdet home>/probe/backends.json``: later loads read it.
``spotdet doctor`` shows the cache, ``spotdet doctor --clear-probes`` empties it, and ``SPOTDET_BACKEND_PROBE=0``
turns the probe off (auto then picks OpenVINO whenever it is installed, the rule before the probe).
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from spotdet.atomic import atomic_write_text
from spotdet.hardware import describe, fingerprint
from spotdet.models.locations import spotdet_home

log = logging.getLogger(__name__)

PROBE_ENV = "SPOTDET_BACKEND_PROBE"
#: OpenVINO is chosen when its median time is at most this share of ONNX Runtime's (5% faster or more)
OPENVINO_MARGIN = 0.95
CANDIDATES = ("onnxruntime", "openvino")
FALLBACK_SIZE = 640  # the probe's input side for a model whose height and width are symbolic


@dataclass
class ProbeResult:
    """One decision: the runtime chosen, each candidate's median ms per image, and where it was measured."""

    chosen: str
    ms: dict[str, float]
    model: str
    sha256: str
    threads: int | None
    hardware: str  # fingerprint id
    machine: str  # the fingerprint, described in one line
    measured_at: float = field(default_factory=time.time)
    cached: bool = False


def probe_enabled() -> bool:
    return os.environ.get(PROBE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def cache_path() -> Path:
    return spotdet_home() / "probe" / "backends.json"


def cache_key(sha256: str, threads: int | None, hardware: str) -> str:
    return f"{hardware}/{sha256[:16]}/t{threads or 'all'}"


def load_cache() -> dict[str, dict[str, Any]]:
    """Every cached decision by key; an unreadable cache counts as empty (it is only a cache)."""
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def clear_cache() -> int:
    """Forget every decision; returns how many there were."""
    count = len(load_cache())
    cache_path().unlink(missing_ok=True)
    return count


def _store(key: str, result: ProbeResult) -> None:
    entries = load_cache()  # re-read: another process may have added its own decisions
    entries[key] = {k: v for k, v in asdict(result).items() if k != "cached"}
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(entries, indent=1, sort_keys=True))


def choose(ms: dict[str, float]) -> str:
    """OpenVINO only where it measured at least ``OPENVINO_MARGIN`` faster; ONNX Runtime otherwise."""
    ort_ms, ov_ms = ms.get("onnxruntime"), ms.get("openvino")
    if ov_ms is not None and ort_ms is not None and ov_ms <= ort_ms * OPENVINO_MARGIN:
        return "openvino"
    return "onnxruntime"


def decide(path: str | Path, threads: int | None = None, size: tuple[int, int] | None = None,
           probe: bool | None = None) -> tuple[ProbeResult | None, Any]:
    """The CPU runtime for the fp32 model at ``path``: (the decision, the winner's loaded backend or None).

    A cached decision is reused (nothing is loaded); without one, both runtimes are loaded and timed, and the
    winner's backend is returned so the caller does not load it twice. ``probe=False`` (or
    SPOTDET_BACKEND_PROBE=0) returns (None, None) without hashing or reading anything: the caller keeps its
    fixed rule. The file's hash is the store's remembered one (``models.verify.file_sha256``), which loading a
    zoo model has already computed.
    """
    from spotdet.models.verify import file_sha256

    if not (probe_enabled() if probe is None else probe):
        return None, None
    path = Path(path)
    sha = file_sha256(path)
    fp = fingerprint()
    key = cache_key(sha, threads, fp["id"])
    cached = load_cache().get(key)
    if cached:
        return ProbeResult(**{**cached, "cached": True}), None
    with _probe_lock():  # processes starting together (a batch job's workers) measure once and agree
        cached = load_cache().get(key)
        if cached:
            return ProbeResult(**{**cached, "cached": True}), None
        result, backends = measure_candidates(path, threads, size)
        result.sha256, result.hardware, result.machine = sha, fp["id"], describe(fp)
        _store(key, result)
    log.info("backend probe for %s on %s: %s -> %s", path.name, result.machine, result.ms, result.chosen)
    return result, backends[result.chosen]


@contextmanager
def _probe_lock() -> Iterator[None]:
    """An exclusive flock beside the cache (POSIX; elsewhere no lock: at worst two processes both measure)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = cache_path().with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def measure_candidates(path: Path, threads: int | None = None,
                       size: tuple[int, int] | None = None) -> tuple[ProbeResult, dict[str, Any]]:
    """Load the model in each CPU runtime and time one image through each, interleaved."""
    from spotdet.backends.onnxruntime import OrtBackend
    from spotdet.backends.openvino import OpenVinoBackend
    from spotdet.bench.measure import interleaved_ms

    backends: dict[str, Any] = {"onnxruntime": OrtBackend(path, device="cpu", threads=threads),
                                "openvino": OpenVinoBackend(path, threads=threads)}
    tensor = _probe_input(backends["onnxruntime"].input_shape, size)
    ms = interleaved_ms({name: (lambda b=b: b.run(tensor)) for name, b in backends.items()})
    result = ProbeResult(choose(ms), ms, path.name, "", threads, "", "")
    return result, backends


def _probe_input(shape, size: tuple[int, int] | None) -> np.ndarray:
    """A fixed pseudo-image of the model's input shape (symbolic sides: ``size`` or FALLBACK_SIZE)."""
    h = shape[2] if isinstance(shape[2], int) else (size[0] if size else FALLBACK_SIZE)
    w = shape[3] if isinstance(shape[3], int) else (size[1] if size else FALLBACK_SIZE)
    channels = shape[1] if isinstance(shape[1], int) else 3
    return np.random.default_rng(0).random((1, channels, h, w), dtype=np.float32)
