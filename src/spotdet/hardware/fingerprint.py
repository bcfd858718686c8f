"""One fingerprint of "where a figure was measured": CPU model and features, core count, GPUs and runtime
versions.

Bench rows, optimize cards, the auto-backend probe cache and plans carry it, so a speed or accuracy figure
always says which hardware it holds for, and readers can refuse to mix figures from different machines. The
hostname is left out on purpose: two instances of one cloud machine type share their figures.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

from spotdet.hardware.cpu import cpu_info

#: runtimes whose version changes kernels, hence figures (pip distribution names)
RUNTIMES = ("onnxruntime", "onnxruntime-gpu", "openvino")


def runtime_versions() -> dict[str, str]:
    """Installed runtimes and their versions, read from package metadata (nothing is imported)."""
    found = {}
    for dist in RUNTIMES:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def gpu_names() -> str | None:
    """The NVIDIA GPUs NVML sees ("NVIDIA H100 80GB HBM3"), or None (no driver, no NVML, no GPU)."""
    from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable

    try:
        nvml = Nvml()
    except NvmlUnavailable:
        return None
    try:
        return nvml.description
    finally:
        nvml.close()


def fingerprint() -> dict[str, Any]:
    """What a measurement depends on: {"id", "cpu", "logical_cpus", "isa", "features", "gpus", "runtimes"}."""
    cpu = cpu_info()
    fields = {"cpu": cpu.model, "logical_cpus": cpu.logical_cpus, "isa": cpu.isa, "features": sorted(cpu.features),
              "gpus": gpu_names(), "runtimes": runtime_versions()}
    return {"id": fingerprint_id(fields), **fields}


def fingerprint_id(fields: dict[str, Any]) -> str:
    """12 hex digits naming ``fields`` (any "id" in them is ignored): equal on equal hardware and runtimes."""
    body = json.dumps({k: v for k, v in fields.items() if k != "id"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def describe(fp: dict[str, Any]) -> str:
    """One line for tables and messages: "AMD EPYC 7B13 (avx2, 2 CPUs)" [+ " + NVIDIA H100"]."""
    text = f"{fp.get('cpu', '?')} ({fp.get('isa', '?')}, {fp.get('logical_cpus', '?')} CPUs)"
    return text + (f" + {fp['gpus']}" if fp.get("gpus") else "")
