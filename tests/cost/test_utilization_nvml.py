"""The one NVML wrapper (``spotdet.cost.utilization.nvml``) and the three places that use it.

No GPU on the development machine, so most tests run against the stand-in pynvml from conftest.py;
the real library is checked for the quiet "no GPU" path here and for real figures where a GPU exists.
"""

from __future__ import annotations

import os
import sys

import pytest

from spotdet.cost.utilization.nvml import GpuReading, Nvml, NvmlUnavailable
from spotdet.errors import SpotdetError
from support.gpu import real_gpu_present

MIB = 2**20


def two_gpus(pid: int = 4242) -> list[dict]:
    return [
        dict(name=b"NVIDIA L4", util=37, used=1024 * MIB, total=23034 * MIB, procs=[(pid, 300 * MIB), (7, 50 * MIB)]),
        dict(name="NVIDIA A10G", util=100, used=512 * MIB, total=22731 * MIB, procs=[(pid, 100 * MIB), (pid, None)]),
    ]


# -- the wrapper ------------------------------------------------------------------------------------------

def test_names_readings_and_description(fake_pynvml):
    fake_pynvml(two_gpus())
    with Nvml() as nvml:
        assert nvml.count == 2
        assert nvml.names == ["NVIDIA L4", "NVIDIA A10G"]  # bytes from old nvidia-ml-py are decoded
        assert nvml.description == "NVIDIA L4, NVIDIA A10G"
        assert nvml.readings() == [GpuReading(0, 37.0, 1024 * MIB, 23034 * MIB),
                                   GpuReading(1, 100.0, 512 * MIB, 22731 * MIB)]


def test_process_memory_is_summed_over_gpus(fake_pynvml):
    fake_pynvml(two_gpus(pid=4242))
    with Nvml() as nvml:
        assert nvml.process_memory_bytes(4242) == 400 * MIB  # 300 + 100; the entry without a figure adds 0
        assert nvml.process_memory_bytes(7) == 50 * MIB
        assert nvml.process_memory_bytes(999) is None  # not on any GPU: unknown, not zero


def test_a_gpu_refusing_the_process_query_is_left_out(fake_pynvml):
    gpus = two_gpus(pid=4242)
    gpus[0]["procs"] = "refused"
    fake_pynvml(gpus)
    with Nvml() as nvml:
        assert nvml.process_memory_bytes(4242) == 100 * MIB


def test_close_releases_nvml_once(fake_pynvml):
    lib = fake_pynvml(two_gpus())
    nvml = Nvml()
    assert lib.calls == {"init": 1, "shutdown": 0}
    nvml.close()
    nvml.close()
    assert lib.calls == {"init": 1, "shutdown": 1}


@pytest.mark.parametrize("gpus, init_error, message, released", [
    ([], "NVML Shared Library Not Found", r"^NVML unavailable \(FakeNvmlError: NVML Shared Library Not Found\)$", 0),
    ([], "", r"^NVML unavailable \(FakeNvmlError: no NVIDIA driver\)$", 0),
    ([], None, r"^NVML unavailable \(NVML reports no GPU\)$", 1),  # initialized, then released again
])
def test_absent_driver_or_gpu_is_one_clear_exception(fake_pynvml, gpus, init_error, message, released):
    lib = fake_pynvml(gpus, init_error=init_error)
    with pytest.raises(NvmlUnavailable, match=message) as info:
        Nvml()
    assert isinstance(info.value, SpotdetError) and info.value.exit_code == 1
    assert lib.calls["shutdown"] == released


def test_missing_nvidia_ml_py_is_the_same_exception(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py is not installed"):
        Nvml()


@pytest.mark.skipif(real_gpu_present(), reason="a GPU is present")
def test_real_nvml_without_gpu_raises_nvml_unavailable():
    with pytest.raises(NvmlUnavailable, match="^NVML unavailable"):
        Nvml()


@pytest.mark.skipif(not real_gpu_present(), reason="no GPU / NVIDIA driver here")
def test_real_nvml_on_a_gpu():
    with Nvml() as nvml:
        readings = nvml.readings()
        assert len(readings) == nvml.count >= 1 and nvml.description
        assert all(0 <= r.util_pct <= 100 and 0 < r.mem_used_bytes <= r.mem_total_bytes for r in readings)


# -- its users: the service's GPU gauges and the bench's GPU memory -----------------------------------------

def _families(collector) -> dict[str, dict[str, float]]:
    return {f.name: {s.labels["gpu"]: s.value for s in f.samples} for f in collector.collect()}


def test_service_gpu_gauges(fake_pynvml):
    from spotdet.serve.metrics import GpuCollector

    fake_pynvml(two_gpus())
    assert _families(GpuCollector()) == {
        "spotdet_gpu_utilization_percent": {"0": 37.0, "1": 100.0},
        "spotdet_gpu_memory_used_bytes": {"0": 1024 * MIB, "1": 512 * MIB},
        "spotdet_gpu_memory_total_bytes": {"0": 23034 * MIB, "1": 22731 * MIB},
    }


def test_service_gpu_gauges_absent_without_nvml(fake_pynvml):
    from prometheus_client import generate_latest

    from spotdet.serve.metrics import GpuCollector, ServiceMetrics

    fake_pynvml([], init_error="Driver Not Loaded")
    assert _families(GpuCollector()) == {}
    text = generate_latest(ServiceMetrics().registry).decode()
    assert "spotdet_gpu_" not in text and "spotdet_requests_total" in text


def test_bench_gpu_memory_of_this_process(fake_pynvml):
    from spotdet.bench.memory import GpuMemory

    lib = fake_pynvml(two_gpus(pid=os.getpid()))
    gpu = GpuMemory()
    assert gpu.available and gpu.description == "NVIDIA L4, NVIDIA A10G"
    assert gpu.used_mb() == 400.0
    gpu.close()
    assert lib.calls["shutdown"] == 1


def test_bench_gpu_memory_without_nvml(fake_pynvml):
    from spotdet.bench.memory import GpuMemory

    fake_pynvml([], init_error="NVML Shared Library Not Found")
    gpu = GpuMemory()
    assert not gpu.available and gpu.description is None and gpu.used_mb() is None
    gpu.close()


@pytest.mark.parametrize("gpus, expected", [(two_gpus(), "NVIDIA L4, NVIDIA A10G"), ([], None)])
def test_bench_machine_info_names_the_gpus(fake_pynvml, gpus, expected):
    from spotdet.bench.runner import machine_info

    fake_pynvml(gpus)  # no GPU: NVML "reports no GPU", so no names
    assert machine_info()["gpus"] == expected
