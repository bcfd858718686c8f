"""Peak memory of this process: resident memory on the CPU side, NVML process memory on a GPU.

GPU memory is NVML's figure for this process: the CUDA context plus what ONNX Runtime's arena holds. The arena
keeps what it grew to (``arena_extend_strategy=kSameAsRequested``, ``backends/onnxruntime.py``), so a reading
after a batch is the peak that batch needed; the context is counted because a card must hold it too.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_mb() -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


class PeakMemory:
    """Peak RSS (MiB) between ``reset()`` and ``peak_mb()``.

    On Linux the kernel keeps the high-water mark (VmHWM) and resets it on ``echo 5 > clear_refs``, which
    catches short spikes inside a single inference. Elsewhere a thread polls RSS every 5 ms.
    """

    def __init__(self) -> None:
        self._poll_max = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.method = "VmHWM" if self._try_reset_hwm() else "polling"

    @staticmethod
    def _try_reset_hwm() -> bool:
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            return False
        return _vm_hwm_mb() is not None

    def reset(self) -> None:
        if self.method == "VmHWM" and self._try_reset_hwm():
            return
        self.method = "polling"
        self._stop_thread()
        self._poll_max = rss_mb()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="spotdet-peak-rss")
        self._thread.start()

    def _poll(self) -> None:
        proc = psutil.Process(os.getpid())
        while not self._stop.wait(0.005):
            self._poll_max = max(self._poll_max, proc.memory_info().rss / 2**20)

    def peak_mb(self) -> float:
        if self.method == "VmHWM":
            value = _vm_hwm_mb()
            if value is not None:
                return value
        return max(self._poll_max, rss_mb())

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self._stop_thread()


class GpuMemory:
    """GPU memory used by this process via NVML, when NVML works (None otherwise)."""

    def __init__(self) -> None:
        from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable

        try:
            self._nvml: Nvml | None = Nvml()
        except NvmlUnavailable:  # no driver / no GPU: the CPU path reports RSS only
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    @property
    def description(self) -> str | None:
        """The GPU names (``"NVIDIA L4"``, comma-separated when there are several), None without NVML."""
        return self._nvml.description if self._nvml else None

    def used_mb(self) -> float | None:
        if not self._nvml:
            return None
        used = self._nvml.process_memory_bytes(os.getpid())
        return used / 2**20 if used is not None else None

    def close(self) -> None:
        if self._nvml:
            self._nvml.close()
