"""Which machine a bench result belongs to: its identity (hostname, CPU, GPUs, runtime, the hardware
fingerprint of ``spotdet.hardware``) and a file-name key."""

from __future__ import annotations

import os
import platform
import re
import socket
from typing import Any

from spotdet.hardware import cpu_name, fingerprint

__all__ = ["cpu_name", "machine_info", "machine_key"]


def machine_info() -> dict[str, Any]:
    """This machine as bench reports store it; ``fingerprint`` is the id every row of the report carries."""
    import onnxruntime as ort
    import psutil

    fp = fingerprint()
    return {"hostname": socket.gethostname(), "cpu": fp["cpu"], "logical_cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "gpus": fp["gpus"],
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "python": platform.python_version(), "isa": fp["isa"], "cpu_features": fp["features"],
            "fingerprint": fp["id"]}


def machine_key(info: dict[str, Any] | None = None) -> str:
    """A file-name-safe id of this machine: hostname + CPU model + CPU count (+ GPU names)."""
    info = info or machine_info()
    raw = f"{info['hostname']}-{info['cpu']}-{info['logical_cpus']}c" + (f"-{info['gpus']}" if info.get("gpus") else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_")[:150]
