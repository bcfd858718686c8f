"""Which machine a bench result belongs to: its identity (hostname, CPU, GPUs, runtime) and a file-name key."""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort
    import psutil

    from spotdet.bench.memory import GpuMemory

    gpu = GpuMemory()
    gpus = gpu.description
    gpu.close()
    return {"hostname": socket.gethostname(), "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "gpus": gpus,
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "python": platform.python_version()}


def machine_key(info: dict[str, Any] | None = None) -> str:
    """A file-name-safe id of this machine: hostname + CPU model + CPU count (+ GPU names)."""
    info = info or machine_info()
    raw = f"{info['hostname']}-{info['cpu']}-{info['logical_cpus']}c" + (f"-{info['gpus']}" if info.get("gpus") else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_")[:150]
