"""CPU features for tests that branch on them: a feature is tested where the CPU has it, its refusal or
fallback where it does not, and (through SPOTDET_CPU_FEATURES) the refusal on every CPU."""

from __future__ import annotations

import os

import pytest

from spotdet.hardware import FEATURES_ENV, cpu_info

#: the CPU as found, whatever override the caller's environment sets
_FOUND = cpu_info() if not os.environ.get(FEATURES_ENV, "").strip() else None
NATIVE_BF16 = bool(_FOUND and _FOUND.native_bf16)
VNNI = bool(_FOUND and _FOUND.vnni)
#: the flags of an AMD EPYC Zen 3 (or Intel Broadwell/Haswell): no AVX-512, no VNNI, no bf16
AVX2_ONLY = "avx2,fma"

needs_native_bf16 = pytest.mark.skipif(
    not NATIVE_BF16, reason="needs a CPU with native bf16 (AVX-512 BF16 or AMX), absent here; the refusal is "
                            "tested instead (tests/backends/test_selection.py)")


@pytest.fixture
def avx2_only_cpu(monkeypatch):
    """spotdet decides as on an AVX2-only CPU (its decisions only: the runtimes' kernels are this CPU's)."""
    monkeypatch.setenv(FEATURES_ENV, AVX2_ONLY)
    return cpu_info()
