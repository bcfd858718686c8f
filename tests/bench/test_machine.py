"""The machine a bench result belongs to, and its cache key."""

from __future__ import annotations

import os
import re

from spotdet.bench.machine import machine_info, machine_key


def test_machine_info_describes_this_machine():
    info = machine_info()
    assert info["logical_cpus"] == os.cpu_count() and info["memory_gb"] > 0
    assert "CPUExecutionProvider" in info["providers"] and info["onnxruntime"]


def test_machine_key_is_file_name_safe_and_tells_machines_apart():
    info = {"hostname": "box 1", "cpu": "AMD EPYC 7B13 64-Core Processor", "logical_cpus": 2, "gpus": None}
    key = machine_key(info)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key) and key.startswith("box_1-AMD_EPYC") and key.endswith("-2c")
    assert machine_key({**info, "gpus": "NVIDIA L4"}) == key + "-NVIDIA_L4"
    assert machine_key({**info, "logical_cpus": 4}) != key
    assert len(machine_key({**info, "cpu": "x" * 500})) == 150
