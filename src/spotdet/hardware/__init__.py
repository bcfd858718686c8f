"""What this machine is: CPU model and instruction-set features, GPUs, runtimes, and one fingerprint that every
measurement carries (DESIGN.md "hardware/")."""

from spotdet.hardware.cpu import FEATURES_ENV, CpuInfo, cpu_info, cpu_name
from spotdet.hardware.fingerprint import describe, fingerprint, fingerprint_id, runtime_versions

__all__ = ["FEATURES_ENV", "CpuInfo", "cpu_info", "cpu_name", "describe", "fingerprint", "fingerprint_id",
           "runtime_versions"]
