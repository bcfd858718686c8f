"""Where samples come from: every GPU through NVML, or the whole machine's CPU through psutil.

``open_backend("auto")`` prefers NVML and otherwise falls back to the CPU quietly, returning the reason
so ``spotdet monitor`` can say why it is not sampling a GPU.
"""

from __future__ import annotations

import time

import psutil

from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable
from spotdet.cost.utilization.store import Sample
from spotdet.errors import UsageError


class NvmlBackend:
    """GPU utilization and memory for every GPU (one sample per GPU per tick), through ``Nvml``."""

    name = "nvml"

    def __init__(self) -> None:
        self.nvml = Nvml()  # NvmlUnavailable when there is no driver/GPU
        self.description = self.nvml.description

    def sample(self, ts: float) -> list[Sample]:
        return [Sample(ts, f"gpu{r.index}", r.util_pct, r.mem_used_bytes / 2**20, r.mem_total_bytes / 2**20)
                for r in self.nvml.readings()]

    def close(self) -> None:
        self.nvml.close()


class CpuBackend:
    """System CPU utilization and memory through psutil (the fallback when there is no GPU)."""

    name = "cpu"

    MIN_SPAN = 0.1  # seconds; a CPU percentage over a shorter span is mostly noise

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self._since = time.monotonic()
        self.description = f"{psutil.cpu_count()} logical CPUs (system-wide utilization)"

    def sample(self, ts: float) -> list[Sample]:
        wait = self.MIN_SPAN - (time.monotonic() - self._since)
        if wait > 0:
            time.sleep(wait)
        self._since = time.monotonic()
        vm = psutil.virtual_memory()
        return [Sample(ts, "cpu", float(psutil.cpu_percent(interval=None)), (vm.total - vm.available) / 2**20,
                       vm.total / 2**20)]

    def close(self) -> None:
        pass


def open_backend(kind: str = "auto") -> tuple[NvmlBackend | CpuBackend, str | None]:
    """(backend, why NVML was not used or None). ``kind`` is auto | gpu | cpu."""
    if kind not in ("auto", "gpu", "cpu"):
        raise UsageError(f"backend must be auto, gpu or cpu, got {kind!r}")
    if kind == "cpu":
        return CpuBackend(), "CPU sampling was asked for"
    try:
        return NvmlBackend(), None
    except NvmlUnavailable as exc:
        if kind == "gpu":
            raise UsageError(f"{exc}; GPU sampling needs an NVIDIA driver and nvidia-ml-py") from None
        return CpuBackend(), f"{exc}; sampling CPU utilization instead"
