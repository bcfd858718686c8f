"""The project's one NVML wrapper: GPU names, utilization and memory, and a process's GPU memory.

Everything in spotdet that asks NVML something goes through ``Nvml``: the utilization sampler
(``backends.NvmlBackend``), the service's GPU gauges (``spotdet.serve.metrics``) and the bench's GPU
memory (``spotdet.bench.memory.GpuMemory``). Opening it either works completely (library loaded,
driver answering, at least one GPU, handles fetched once) or raises ``NvmlUnavailable`` with the
reason, so callers have exactly one exception to catch to fall back to the CPU path.

NVML counts ``nvmlInit``/``nvmlShutdown`` pairs itself, so several ``Nvml`` objects in one process
(a service that samples utilization and exports gauges) do not shut each other down.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotdet.errors import SpotdetError


class NvmlUnavailable(SpotdetError):
    """NVML cannot be used here: nvidia-ml-py is missing, no NVIDIA driver is loaded, or there is no GPU."""


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment."""

    index: int
    util_pct: float  # 0-100, share of the last sample period the GPU was running a kernel
    mem_used_bytes: int
    mem_total_bytes: int


def _text(value: bytes | str) -> str:
    # older nvidia-ml-py releases return bytes, newer ones str
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """An initialized NVML session with a handle per GPU; ``close()`` (or ``with``) releases it."""

    def __init__(self) -> None:
        try:
            import pynvml  # nvidia-ml-py
        except ImportError as exc:
            raise NvmlUnavailable(f"NVML unavailable (nvidia-ml-py is not installed: {exc}; "
                                  "pip install 'spotdet[gpu]')") from exc
        try:
            pynvml.nvmlInit()  # NVMLError_LibraryNotFound / DriverNotLoaded / ... without a driver
        except Exception as exc:
            raise NvmlUnavailable(f"NVML unavailable ({type(exc).__name__}: {str(exc) or 'no NVIDIA driver'})") from exc
        self._lib = pynvml
        self._open = True
        try:
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.names = [_text(pynvml.nvmlDeviceGetName(h)) for h in self._handles]
        except Exception as exc:
            self.close()
            raise NvmlUnavailable(f"NVML unavailable ({type(exc).__name__}: {exc})") from exc
        if not self._handles:
            self.close()
            raise NvmlUnavailable("NVML unavailable (NVML reports no GPU)")

    @property
    def count(self) -> int:
        return len(self._handles)

    @property
    def description(self) -> str:
        """The GPU names, e.g. ``"NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3"``."""
        return ", ".join(self.names)

    def readings(self) -> list[GpuReading]:
        """Utilization and memory of every GPU, in NVML index order."""
        out = []
        for i, h in enumerate(self._handles):
            util = self._lib.nvmlDeviceGetUtilizationRates(h)
            mem = self._lib.nvmlDeviceGetMemoryInfo(h)
            out.append(GpuReading(i, float(util.gpu), int(mem.used), int(mem.total)))
        return out

    def process_memory_bytes(self, pid: int) -> int | None:
        """GPU memory used by ``pid`` summed over all GPUs; None when no GPU reports it.

        A GPU whose driver refuses the query (NVMLError) is left out rather than failing the caller:
        the figure is informational, and on some platforms the per-process list is not available.
        """
        total, seen = 0, False
        for h in self._handles:
            try:
                procs = self._lib.nvmlDeviceGetComputeRunningProcesses(h)
            except self._lib.NVMLError:
                continue
            for p in procs:
                if p.pid == pid and p.usedGpuMemory is not None:
                    total += int(p.usedGpuMemory)
                    seen = True
        return total if seen else None

    def close(self) -> None:
        """Release this session (once; later calls do nothing)."""
        if not self._open:
            return
        self._open = False
        try:
            self._lib.nvmlShutdown()
        except Exception:  # shutting down a library that is going away; nothing useful to report
            pass

    def __enter__(self) -> "Nvml":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
