"""Utilization logs: samples of GPU (NVML) or CPU (psutil) utilization and memory, stored in SQLite.

* ``store``      the SQLite log: ``Sample``, ``LoadedLog``, ``open_db``, ``write_samples``, ``read_db``;
* ``nvml``       the project's one NVML wrapper (also used by the service's GPU gauges and the bench);
* ``backends``   where samples come from: ``NvmlBackend`` (every GPU) or ``CpuBackend`` (psutil);
* ``sampler``    ``Sampler``, foreground (``spotdet monitor``) or in a thread inside a service;
* ``nvidia_smi`` ``read_nvidia_smi_csv`` for logs that nvidia-smi wrote.

The names below are re-exported so ``from spotdet.cost.utilization import X`` does not depend on which
module ``X`` lives in.
"""

from spotdet.cost.utilization.backends import CpuBackend, NvmlBackend, open_backend
from spotdet.cost.utilization.nvidia_smi import read_nvidia_smi_csv
from spotdet.cost.utilization.nvml import GpuReading, Nvml, NvmlUnavailable
from spotdet.cost.utilization.sampler import Sampler
from spotdet.cost.utilization.store import LoadedLog, Sample, UtilizationLogError, open_db, read_db, write_samples

__all__ = ["CpuBackend", "GpuReading", "LoadedLog", "Nvml", "NvmlBackend", "NvmlUnavailable", "Sample", "Sampler",
           "UtilizationLogError", "open_backend", "open_db", "read_db", "read_nvidia_smi_csv", "write_samples"]
