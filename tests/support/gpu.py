"""Whether a real NVIDIA GPU answers NVML here (tests of the real GPU path skip without one, and say so)."""

from __future__ import annotations

from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable


def real_gpu_present() -> bool:
    try:
        Nvml().close()
    except NvmlUnavailable:
        return False
    return True
