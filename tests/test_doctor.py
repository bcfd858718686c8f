"""spotdet.doctor: this machine's report, and what each request resolves to here (both CPU classes)."""

from __future__ import annotations

import pytest

from spotdet.backends import probe
from spotdet.doctor import report
from spotdet.hardware import FEATURES_ENV, cpu_info


def test_the_report_describes_this_machine(monkeypatch):
    monkeypatch.delenv(FEATURES_ENV, raising=False)
    data = report()
    cpu = cpu_info()
    m = data["machine"]
    assert m["cpu"] == cpu.model and m["isa"] == cpu.isa and not m["features_overridden"]
    assert {flag for flag, has in m["features"].items() if has} == cpu.features
    assert "CPUExecutionProvider" in data["runtimes"]["onnxruntime"]["providers"]
    assert set(data["choices"]) == {"backend=auto", "fp32", "bf16", "int8-static", "int8-dynamic", "fp16"}
    if data["runtimes"]["openvino"] is not None:
        assert data["choices"]["bf16"].startswith("openvino bf16" if cpu.native_bf16 else "refused")


def test_on_an_avx2_only_cpu_bf16_is_refused_and_int8_runs_exact(avx2_only_cpu):
    data = report()
    assert data["machine"]["isa"] == "avx2" and data["machine"]["features_overridden"]
    assert data["choices"]["bf16"].startswith("refused") and "(avx2) has no native bf16" in data["choices"]["bf16"]
    assert "without VNNI: exact-sum mode on" in data["choices"]["int8-static"]


def test_probes_say_which_machine_measured_them(monkeypatch):
    pytest.importorskip("openvino")
    from spotdet import Detector

    monkeypatch.setenv(probe.PROBE_ENV, "1")
    monkeypatch.delenv(FEATURES_ENV, raising=False)
    Detector("fastestdet", threads=1)
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma,avx512f,avx512_bf16,avx512_vnni,amx_tile")  # "another machine"
    (row,) = report()["probes"]
    assert row["model"] == "fastestdet.onnx" and row["this_machine"] is False
    monkeypatch.delenv(FEATURES_ENV)
    assert report()["probes"][0]["this_machine"] is True
