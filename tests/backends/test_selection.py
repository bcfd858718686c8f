"""Which runtime ``backend="auto"`` picks, and the refusals that name the fix (fakes stand in for absent hardware)."""

from __future__ import annotations

import pytest

from spotdet import Detector, ProviderUnavailableError, UsageError
from spotdet.backends import choose_backend
from spotdet.backends.openvino import check_bf16, openvino_available
from spotdet.hardware import CpuInfo
from support.cpu import NATIVE_BF16


@pytest.mark.parametrize("device, gpu, ov, expected", [
    ("auto", False, True, "openvino"),      # a CPU machine with OpenVINO installed
    ("auto", False, False, "onnxruntime"),  # ... without it
    ("cpu", False, True, "openvino"),
    ("auto", True, True, "onnxruntime"),    # a GPU machine (fake provider list): GPUs stay on ONNX Runtime
    ("cuda", False, True, "onnxruntime"),
    ("tensorrt", True, True, "onnxruntime"),
])
def test_auto_choice(device, gpu, ov, expected):
    assert choose_backend("auto", device, openvino_installed=ov, gpu_providers=gpu) == expected


@pytest.mark.parametrize("model_precision", ["int8-dynamic", "int8-static", "fp16"])
def test_auto_keeps_quantized_files_on_onnxruntime(model_precision):
    assert choose_backend("auto", "cpu", model_precision=model_precision, openvino_installed=True) == "onnxruntime"
    assert choose_backend("openvino", "cpu", model_precision=model_precision) == "openvino"  # when asked for


def test_bf16_picks_the_runtime_that_has_it():
    assert choose_backend("auto", "auto", "bf16", openvino_installed=False, gpu_providers=True) == "openvino"
    with pytest.raises(UsageError, match="runs on the openvino backend"):
        choose_backend("onnxruntime", "auto", "bf16")


def test_explicit_choices_are_kept_or_refused_with_the_reason():
    assert choose_backend("onnxruntime", "cpu", openvino_installed=True) == "onnxruntime"
    assert choose_backend("openvino", "cpu", openvino_installed=False) == "openvino"  # load says what to install
    with pytest.raises(UsageError, match="OpenVINO runs on the CPU"):
        choose_backend("openvino", "cuda")
    with pytest.raises(UsageError, match="backend must be one of auto, onnxruntime, openvino"):
        choose_backend("tensorflow")


def test_bf16_needs_both_the_cpu_features_and_openvinos_capability(avx2_only_cpu):
    zen4 = CpuInfo("AMD EPYC 9B14", 4, frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
    check_bf16(["FP32", "BF16", "INT8"], zen4)  # no error
    with pytest.raises(UsageError, match="native bf16"):
        check_bf16(["FP32", "INT8", "BIN"], zen4)  # OpenVINO says no
    with pytest.raises(UsageError) as info:
        check_bf16(["FP32", "BF16", "INT8"])  # this process now sees an AVX2-only CPU (SPOTDET_CPU_FEATURES)
    assert "native bf16" in str(info.value) and "(avx2)" in str(info.value) and "precision='fp32'" in str(info.value)


@pytest.mark.skipif(not openvino_available(), reason="needs the openvino extra")
def test_bf16_on_this_cpu_runs_where_it_is_native_and_is_refused_where_not(photos):
    """Both branches on any machine: this CPU's own answer, then an AVX2-only CPU's (the override)."""
    if NATIVE_BF16:
        assert Detector("fastestdet", precision="bf16").backend.provider.endswith("bf16")
    else:
        with pytest.raises(UsageError, match="native bf16"):
            Detector("fastestdet", precision="bf16")


@pytest.mark.skipif(not openvino_available(), reason="needs the openvino extra")
def test_bf16_is_refused_on_an_avx2_only_cpu(avx2_only_cpu):
    with pytest.raises(UsageError, match=r"native bf16 .* \(avx2\) has none"):
        Detector("fastestdet", precision="bf16")


def test_openvino_not_installed_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # what an environment without the extra sees
    assert not openvino_available()
    with pytest.raises(ProviderUnavailableError) as info:
        Detector("yolox-nano", backend="openvino")
    assert "pip install 'spotdet[openvino]'" in str(info.value) and "backend='onnxruntime'" in str(info.value)
    assert Detector("yolox-nano").backend.name == "onnxruntime"  # auto falls back


def test_bf16_refuses_a_model_that_is_not_fp32():
    with pytest.raises(UsageError, match="compiles an fp32 model; yolov8n-int8 is int8"):
        Detector("yolov8n-int8", precision="bf16")
