"""The CPU this process runs on: its model, its core count and the instruction-set features spotdet's choices
depend on.

Why this matters: the same model file is fast or slow, exact or lossy, depending on the CPU's instruction set.
OpenVINO's bf16 needs native bf16 (AVX-512 BF16 or AMX), else it is emulated and slower than fp32. ONNX Runtime's
INT8 kernels multiply u8 x s8 with VNNI (``vpdpbusd``, 32-bit sums) where the CPU has it, and with AVX2's
``vpmaddubsw`` elsewhere, whose pairwise 16-bit sums saturate: the same INT8 file gives different, less exact
outputs on an AVX2-only CPU (docs/hardware.md).

``SPOTDET_CPU_FEATURES`` (a comma-separated list of /proc/cpuinfo flag names, e.g. ``avx2,fma``; ``none`` for
none) replaces the detected features for spotdet's own decisions: the tests use it to check on any machine both
the branch a feature enables and the refusal/fallback where it is absent, and a user can ask "what would spotdet
choose on that CPU". It does not change what the runtimes' kernels do.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

FEATURES_ENV = "SPOTDET_CPU_FEATURES"
#: the /proc/cpuinfo flags whose presence changes what spotdet does or what a measurement means
TRACKED = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
           "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU is; ``features`` holds the TRACKED flags it has (or the override's)."""

    model: str
    logical_cpus: int
    features: frozenset[str]
    overridden: bool = False  # features come from SPOTDET_CPU_FEATURES, not from the CPU

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (AVX-512 BF16 or AMX): what OpenVINO's bf16 needs to pay."""
        return any(f in self.features for f in BF16_FLAGS)

    @property
    def vnni(self) -> bool:
        """u8 x s8 dot products with 32-bit sums (AVX-512 VNNI, AVX-VNNI or AMX): INT8 without 16-bit
        saturation."""
        return any(f in self.features for f in VNNI_FLAGS)

    @property
    def isa(self) -> str:
        """A short name for the level that decides kernels: amx > avx512-vnni/avx-vnni > avx512 > avx2 > baseline."""
        f = self.features
        if "amx_int8" in f or "amx_bf16" in f:
            return "amx"
        if "avx512_vnni" in f:
            return "avx512-vnni"
        if "avx_vnni" in f:
            return "avx2-vnni"
        if "avx512f" in f:
            return "avx512"
        return "avx2" if "avx2" in f else "baseline"


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13"); the platform's processor string where /proc/cpuinfo is absent."""
    return _proc_cpuinfo()[0] or platform.processor() or platform.machine() or "unknown-cpu"


def cpu_info() -> CpuInfo:
    """This CPU, with SPOTDET_CPU_FEATURES (read on every call, so a test's override takes effect) applied."""
    model, flags = _proc_cpuinfo()
    raw = os.environ.get(FEATURES_ENV, "").strip()
    if raw:  # unset or empty: the CPU's own; "none": no tracked feature
        wanted = {f.strip().lower() for f in raw.split(",") if f.strip()}
        return CpuInfo(cpu_name(), os.cpu_count() or 1, frozenset(wanted & set(TRACKED)), overridden=True)
    return CpuInfo(model or cpu_name(), os.cpu_count() or 1, frozenset(flags & set(TRACKED)))


@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ("", {}) where there is none (not Linux)."""
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags
