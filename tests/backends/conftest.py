"""The ``gpu`` marker: tests that need a real NVIDIA GPU and onnxruntime-gpu skip elsewhere, saying which is missing.

A mock can stand in for absent hardware in option and key tests (``test_tensorrt.py``), never for what only a
GPU can show: a real allocation failure, a real engine build.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from support.gpu import real_gpu_present


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with onnxruntime-gpu (skipped elsewhere, with why)")


def gpu_missing() -> str | None:
    """Why the GPU tests cannot run here, or None when they can."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ("no CUDAExecutionProvider in this ONNX Runtime (available: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu: pip install 'spotdet[gpu]'")
    if not real_gpu_present():
        return "no NVIDIA GPU answers NVML here (no driver, or no GPU)"
    return None


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_a_gpu(request):
    if request.node.get_closest_marker("gpu") is not None:
        reason = gpu_missing()
        if reason:
            pytest.skip(f"GPU test: {reason}")
