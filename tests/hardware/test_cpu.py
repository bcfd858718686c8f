"""spotdet.hardware: this CPU's features as /proc/cpuinfo says, the override the tests use, one fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotdet.hardware import FEATURES_ENV, CpuInfo, cpu_info, describe, fingerprint, fingerprint_id
from spotdet.hardware.cpu import TRACKED, _proc_cpuinfo


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo (not Linux)")
def test_features_are_the_tracked_flags_proc_cpuinfo_lists(monkeypatch):
    monkeypatch.delenv(FEATURES_ENV, raising=False)
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    cpu = cpu_info()
    assert cpu.features == flags & set(TRACKED) and not cpu.overridden
    assert cpu.model == _proc_cpuinfo()[0] and cpu.logical_cpus >= 1
    assert cpu.native_bf16 == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert cpu.vnni == bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def test_the_override_replaces_the_features_for_spotdets_decisions(avx2_only_cpu, monkeypatch):
    assert avx2_only_cpu.features == {"avx2", "fma"} and avx2_only_cpu.overridden
    assert (avx2_only_cpu.isa, avx2_only_cpu.native_bf16, avx2_only_cpu.vnni) == ("avx2", False, False)
    monkeypatch.setenv(FEATURES_ENV, "AVX2, avx512f,avx512_vnni,avx512_bf16,not-a-flag")
    cpu = cpu_info()
    assert cpu.features == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
    assert (cpu.isa, cpu.native_bf16, cpu.vnni) == ("avx512-vnni", True, True)


@pytest.mark.parametrize("flags, isa", [
    ({"avx2", "fma"}, "avx2"), ({"avx2", "avx512f"}, "avx512"), ({"avx2", "avx_vnni"}, "avx2-vnni"),
    ({"avx2", "avx512f", "avx512_vnni"}, "avx512-vnni"), ({"avx512f", "amx_int8", "amx_bf16"}, "amx"),
    (set(), "baseline")])
def test_isa_names_the_level_that_decides_kernels(flags, isa):
    assert CpuInfo("x", 1, frozenset(flags)).isa == isa


def test_fingerprint_changes_with_the_hardware_and_not_with_the_hostname(avx2_only_cpu, monkeypatch):
    fp = fingerprint()
    assert fp["id"] == fingerprint_id(fp) and len(fp["id"]) == 12 and fp["isa"] == "avx2"
    assert "hostname" not in fp and "onnxruntime" in fp["runtimes"]
    assert fingerprint_id({**fp, "gpus": "NVIDIA L4"}) != fp["id"]
    assert fingerprint_id({**fp, "runtimes": {**fp["runtimes"], "onnxruntime": "0.0"}}) != fp["id"]
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma,avx512f,avx512_vnni")
    assert fingerprint()["id"] != fp["id"]
    assert describe(fp).endswith("(avx2, %d CPUs)" % fp["logical_cpus"])
