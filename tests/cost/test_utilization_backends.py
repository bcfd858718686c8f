"""Sampling backends: NVML (one sample per GPU) or psutil's CPU figures, and the automatic choice."""

from __future__ import annotations

import time

import pytest

from spotdet.cost.utilization import CpuBackend, NvmlBackend, Sample, open_backend
from spotdet.errors import UsageError
from support.gpu import real_gpu_present

MIB = 2**20
GPUS = [dict(name="NVIDIA T4", util=12, used=2048 * MIB, total=15360 * MIB, procs=[]),
        dict(name="NVIDIA T4", util=88, used=4096 * MIB, total=15360 * MIB, procs=[])]


def test_nvml_backend_samples_every_gpu_in_mib(fake_pynvml):
    lib = fake_pynvml(GPUS)
    backend = NvmlBackend()
    assert backend.description == "NVIDIA T4, NVIDIA T4"
    assert backend.sample(1000.0) == [Sample(1000.0, "gpu0", 12.0, 2048.0, 15360.0),
                                      Sample(1000.0, "gpu1", 88.0, 4096.0, 15360.0)]
    backend.close()
    assert lib.calls == {"init": 1, "shutdown": 1}


def test_auto_prefers_nvml(fake_pynvml):
    fake_pynvml(GPUS)
    backend, reason = open_backend("auto")
    assert isinstance(backend, NvmlBackend) and backend.name == "nvml" and reason is None
    backend.close()


def test_auto_falls_back_to_cpu_and_says_why(fake_pynvml):
    fake_pynvml([], init_error="Driver Not Loaded")
    backend, reason = open_backend("auto")
    assert isinstance(backend, CpuBackend)
    assert reason == "NVML unavailable (FakeNvmlError: Driver Not Loaded); sampling CPU utilization instead"


def test_gpu_asked_for_without_nvml_is_a_usage_error(fake_pynvml):
    fake_pynvml([], init_error="Driver Not Loaded")
    with pytest.raises(UsageError, match=r"Driver Not Loaded\); GPU sampling needs an NVIDIA driver"):
        open_backend("gpu")


def test_cpu_asked_for_and_unknown_kind(fake_pynvml):
    fake_pynvml(GPUS)  # a GPU is there, but CPU sampling was asked for
    backend, reason = open_backend("cpu")
    assert backend.name == "cpu" and reason == "CPU sampling was asked for"
    with pytest.raises(UsageError, match="auto, gpu or cpu"):
        open_backend("tpu")


def test_real_backend_is_chosen_automatically():
    backend, reason = open_backend("auto")
    try:
        if real_gpu_present():
            assert backend.name == "nvml" and reason is None
            assert all(s.source.startswith("gpu") for s in backend.sample(time.time()))
        else:
            assert backend.name == "cpu" and reason.startswith("NVML unavailable (")
            (s,) = backend.sample(time.time())
            assert s.source == "cpu" and 0.0 <= s.util_pct <= 100.0 and 0 < s.mem_used_mb < s.mem_total_mb
    finally:
        backend.close()


@pytest.mark.skipif(real_gpu_present(), reason="a GPU is present")
def test_real_gpu_backend_refused_without_nvml():
    with pytest.raises(UsageError, match="NVML"):
        open_backend("gpu")


def test_cpu_backend_waits_for_a_meaningful_span():
    backend = CpuBackend()
    start = time.monotonic()
    backend.sample(time.time())
    assert time.monotonic() - start >= CpuBackend.MIN_SPAN * 0.9  # right after opening it waits
